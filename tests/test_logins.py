"""Login evidence (netgptd.flow.logins): TCP sessions built frame by frame, through the real flow table and EVE."""

from __future__ import annotations

from typing import Any

import pytest

from netgptd.eve import flow_event
from netgptd.flow.logins import NOT_A_LOGIN, SCAN_SEGMENTS, LoginScanner
from netgptd.flow.table import FlowTable
from netgptd.rules import FlowRateRules, RuleSettings
from test_flow_table import config, t4

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"

Exchange = list[tuple[str, bytes]]  # ("c" client / "s" server, one TCP segment's payload)


def session(port: int, exchange: Exchange, cport: int = 40000, t: float = 0.0, step: float = 0.01,
            table: FlowTable | None = None) -> dict[str, Any]:  # fmt: skip
    """The EVE flow record of a TCP session: handshake, the exchange, FIN both ways."""
    table = FlowTable(config()) if table is None else table
    table.add(t4(t, CLIENT, SERVER, cport, port, "S"))
    table.add(t4(t + step, SERVER, CLIENT, port, cport, "SA"))
    table.add(t4(t + 2 * step, CLIENT, SERVER, cport, port, "A"))
    now = t + 2 * step
    for side, payload in exchange:
        now += step
        if side == "c":
            table.add(t4(now, CLIENT, SERVER, cport, port, "PA", payload))
        else:
            table.add(t4(now, SERVER, CLIENT, port, cport, "PA", payload))
    table.add(t4(now + step, CLIENT, SERVER, cport, port, "FA"))
    flow = table.add(t4(now + 2 * step, SERVER, CLIENT, port, cport, "FA"))
    assert flow is not None
    return flow_event(flow)


def logins(port: int, exchange: Exchange) -> dict[str, Any] | None:
    return session(port, exchange)["netgpt"].get("logins")


FTP_TRY = [("c", b"USER admin\r\n"), ("s", b"331 Password required for admin.\r\n"), ("c", b"PASS mercury\r\n"),
           ("s", b"530 Login incorrect.\r\n")]  # fmt: skip
FTP = [("s", b"220 FTP server ready.\r\n"), *FTP_TRY, *FTP_TRY, *FTP_TRY]
SMTP = [("s", b"220 mail ESMTP\r\n"), ("c", b"EHLO x\r\n"), ("s", b"250-mail\r\n250 AUTH LOGIN PLAIN\r\n"),
        ("c", b"AUTH LOGIN\r\n"), ("s", b"334 VXNlcm5hbWU6\r\n"), ("c", b"YWRtaW4=\r\n"), ("s", b"334 UGFzc3dvcmQ6\r\n"),
        ("c", b"c2VjcmV0\r\n"), ("s", b"535 5.7.8 Authentication credentials invalid\r\n"),
        ("c", b"AUTH PLAIN AGFkbWluAHNlY3JldA==\r\n"), ("s", b"235 2.7.0 Authentication successful\r\n")]  # fmt: skip
POP3 = [("s", b"+OK POP3 ready\r\n"), ("c", b"USER bob\r\n"), ("s", b"+OK\r\n"), ("c", b"PASS guess\r\n"),
        ("s", b"-ERR [AUTH] Authentication failed.\r\n"), ("c", b"STAT\r\n"), ("s", b"-ERR Unknown command\r\n"),
        ("c", b"AUTH\r\n"), ("s", b"-ERR 1 argument required\r\n"), ("c", b"AUTH PLAIN\r\n"), ("s", b"+ \r\n"),
        ("c", b"AGFkbWluAGd1ZXNz\r\n"), ("s", b"-ERR authentication failed\r\n")]  # fmt: skip
IMAP = [("s", b"* OK IMAP4rev1 ready\r\n"), ("c", b"a1 LOGIN bob guess\r\n"),
        ("s", b"* BYE\r\na1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"), ("c", b"a2 LOGIN bob right\r\n"),
        ("s", b"a2 OK Logged in\r\n"), ("c", b"a3 SELECT inbox\r\n"), ("s", b"a3 NO no such mailbox\r\n")]  # fmt: skip
AUTH_GET = b"GET /admin/ HTTP/1.1\r\nHost: x\r\nUser-Agent: hydra\r\nAuthorization: Basic YWRtaW46Z3Vlc3M=\r\n\r\n"
HTTP_AUTH = [("c", AUTH_GET), ("s", b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
             ("c", AUTH_GET), ("s", b"HTTP/1.1 403 Forbidden\r\n\r\n"),
             ("c", AUTH_GET), ("s", b"HTTP/1.1 200 OK\r\n\r\n"),
             ("c", AUTH_GET), ("s", b"HTTP/1.1 100 Continue\r\n\r\n"), ("s", b"HTTP/1.1 401 Unauthorized\r\n\r\n")]
NTLM = [("c", b"GET /wsman HTTP/1.1\r\nAuthorization: Negotiate TlRMTVNTUAABAAAAl4II4g==\r\n\r\n"),
        ("s", b"HTTP/1.1 401 \r\nWWW-Authenticate: Negotiate TlRMTVNTUAACAAAA\r\n\r\n"),
        ("c", b"GET /wsman HTTP/1.1\r\nAuthorization: Negotiate TlRMTVNTUAADAAAA\r\n\r\n"),
        ("s", b"HTTP/1.1 401 \r\nWWW-Authenticate: Negotiate\r\n\r\n")]  # fmt: skip
HTTP_PLAIN = [("c", b"GET /private HTTP/1.1\r\nHost: x\r\n\r\n"), ("s", b"HTTP/1.1 401 Unauthorized\r\n\r\n"),
              ("c", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ("s", b"HTTP/1.1 403 Forbidden\r\n\r\n")]  # fmt: skip
TELNET = [("s", b"\xff\xfd\x18\xff\xfd\x20"), ("c", b"\xff\xfc\x18\xff\xfc\x20"), ("s", b"\r\nlogin: "),
          ("c", b"root\r\n"), ("s", b"Password: "), ("c", b"toor\r\n"), ("s", b"\r\nLogin incorrect\r\nlogin: "),
          ("c", b"root\r\n"), ("s", b"Password: "), ("c", b"admin\r\n"), ("s", b"\r\nLogin incorrect\r\n")]  # fmt: skip


@pytest.mark.parametrize(("port", "exchange", "expected"), [
    (21, FTP, {"service": "ftp", "attempts": 3, "failed": 3}),
    (2121, FTP, {"service": "ftp", "attempts": 3, "failed": 3}),  # known by its commands off port 21
    (25, SMTP, {"service": "smtp", "attempts": 2, "failed": 1}),
    (110, POP3, {"service": "pop3", "attempts": 2, "failed": 2}),  # -ERR to STAT or a bare AUTH is no login
    (143, IMAP, {"service": "imap", "attempts": 2, "failed": 1}),  # NO to SELECT is no login
    (80, HTTP_AUTH, {"service": "http", "attempts": 4, "failed": 3}),
    (5985, NTLM, {"service": "http", "attempts": 2, "failed": 1}),  # the challenge leg is no failure, the refusal is
    (23, TELNET, {"service": "telnet", "attempts": 2, "failed": 2}),
], ids=["ftp", "ftp-other-port", "smtp", "pop3", "imap", "http-auth", "http-ntlm", "telnet"])  # fmt: skip
def test_failed_logins_from_the_servers_replies(port: int, exchange: Exchange, expected: dict[str, Any]) -> None:
    assert logins(port, exchange) == expected


def test_no_login_no_evidence() -> None:
    """Plain web requests (401/403 without credentials included), mail delivery without AUTH, TLS on 443."""
    assert logins(80, HTTP_PLAIN) is None
    assert logins(25, [("s", b"220 mail\r\n"), ("c", b"EHLO x\r\n"), ("s", b"250 ok\r\n"), ("c", b"MAIL FROM:<a@b>\r\n"),
                       ("s", b"530 5.7.0 Must issue a STARTTLS command first\r\n")]) is None  # fmt: skip
    ftps = [("s", b"220 ready\r\n"), ("c", b"AUTH TLS\r\n"), ("s", b"234 AUTH TLS ok\r\n"), ("c", b"\x16\x03\x01")]
    assert logins(2121, ftps) is None, "explicit FTPS: no login in sight"
    assert logins(443, [("c", b"\x16\x03\x01\x00\x05hello"), ("s", b"\x16\x03\x03\x00\x05hello")]) is None
    s7_connect = b"\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x01\x00\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a"
    assert logins(102, [("c", s7_connect), ("s", b"\x03\x00\x00\x16\x11\xd0")]) is None, "ISO-TSAP, not RDP"


def test_encrypted_login_services_give_their_session_shape() -> None:
    ssh = [("s", b"SSH-2.0-OpenSSH_9.6\r\n"), ("c", b"SSH-2.0-libssh_0.10\r\n"), ("c", bytes(600)), ("s", bytes(900))]
    assert logins(22, ssh) == {"service": "ssh", "short_session": True}
    assert logins(2222, ssh) == {"service": "ssh", "short_session": True}, "known by its banner"
    rdp_request = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00"  # rdpNegReq
    rdp = [("c", rdp_request), ("s", b"\x03\x00\x00\x13")]
    assert logins(3390, rdp) == {"service": "rdp", "short_session": True}
    assert logins(993, [("c", b"\x16\x03\x01"), ("s", b"\x16\x03\x03")]) == {"service": "imaps", "short_session": True}
    long_one = session(22, [("s", b"SSH-2.0-OpenSSH_9.6\r\n"), ("c", b"SSH-2.0-OpenSSH_9.6\r\n")], step=6.0)  # 36 s
    assert long_one["netgpt"]["logins"] == {"service": "ssh", "short_session": False}, "a user's session lasts"


def test_a_scanner_reads_a_bounded_number_of_segments() -> None:
    """A long FTP control session: only the first SCAN_SEGMENTS payload segments are read; flows that are no
    login hold the one shared scanner, and encrypted services one shared scanner each."""
    table = FlowTable(config())
    tries = (SCAN_SEGMENTS // 4) + 10
    event = session(21, [("s", b"220 ready\r\n"), *FTP_TRY * tries], table=table)
    assert event["netgpt"]["logins"]["failed"] == (SCAN_SEGMENTS - 1) // 4 < tries
    other = FlowTable(config())
    session(443, [("c", b"\x16\x03\x01"), ("s", b"\x16\x03\x03")], table=other)
    session(8443, [("c", b"\x16\x03\x01"), ("s", b"\x16\x03\x03")], cport=40001, table=other)
    first, second = [f.logins for f in other.flush()]
    assert first is second is NOT_A_LOGIN


def test_an_active_timeout_carries_the_login_not_its_counts() -> None:
    scanner = LoginScanner("ftp")
    for line in (b"USER a", b"PASS b"):
        scanner.feed(True, line)
    scanner.feed(False, b"530 no")
    scanner.feed(True, b"USER a\r\nPASS c")
    nxt = scanner.carried()
    nxt.feed(False, b"530 no")
    assert (scanner.failed, nxt.failed, nxt.attempts) == (1, 1, 0)


# -- the bruteforce rule on these records ------------------------------------------------------------------


def test_bruteforce_counts_failed_logins_per_client_server_and_service() -> None:
    """Ten failed FTP logins in 100 s (four sessions): one alert; the same over HTTP without credentials: none."""
    rules = FlowRateRules()
    alerts = []
    table = FlowTable(config())
    for n in range(4):
        tries = [("s", b"220 ready\r\n"), *FTP_TRY * (3 if n < 3 else 1)]
        alerts += rules.observe(session(21, tries, cport=41000 + n, t=n * 33.0, table=table))
    assert [a["netgpt"]["detector"] for a in alerts] == ["bruteforce"]
    assert alerts[0]["netgpt"]["logins"] == {"service": "ftp"} and alerts[0]["netgpt"]["flows"] == 10
    assert alerts[0]["netgpt"]["window_s"] == 120.0 and alerts[0]["alert"]["signature_id"] == 1_000_006
    quiet, web = FlowRateRules(), FlowTable(config())
    for n in range(60):
        assert quiet.observe(session(80, HTTP_PLAIN, cport=42000 + n, t=n * 0.05, table=web)) == []


def test_bruteforce_by_short_sessions_has_its_own_threshold() -> None:
    rules = FlowRateRules(RuleSettings(bruteforce_connections=5, bruteforce_failures=50))
    ssh = [("s", b"SSH-2.0-OpenSSH_9.6\r\n"), ("c", b"SSH-2.0-libssh\r\n")]
    table = FlowTable(config())
    raised = [len(rules.observe(session(22, ssh, cport=43000 + n, t=n * 10.0, table=table))) for n in range(6)]
    assert raised == [0, 0, 0, 0, 1, 0]
