"""Login evidence of a TCP flow: failed logins in cleartext protocols, short sessions to encrypted login services.

Pure and I/O-free: the flow table hands each payload segment of a TCP flow
to :func:`scanner_for` (the first) and :meth:`LoginScanner.feed` (the first
``SCAN_SEGMENTS`` of them), and the EVE flow record reads
:func:`login_evidence` at the flow's end.

Why not the first-packet buffers: they keep what the model reads (the shipped
model: 3 packets with payload, a few dozen bytes of each; without a model 8
packets of any kind), and a failed FTP login is the 5th payload segment
(220 banner, USER, 331, PASS, 530), a brute forcer's 2nd and 3rd try on one
connection later still. Longer buffers would hold kilobytes per flow and
change what the model reads; instead each flow that looks like a login
protocol gets a scanner of a few counters (nothing for any other flow, one
shared read-only object per encrypted service), and only its first
``SCAN_SEGMENTS`` payload segments, ``SCAN_BYTES`` of each, are looked at.

Failed logins, counted from the server's reply to a login command:

- FTP: ``530`` after USER/PASS; SMTP: ``535`` after AUTH; POP3: ``-ERR``
  after USER/PASS/APOP/AUTH; IMAP: ``<tag> NO`` to ``<tag> LOGIN`` or
  ``AUTHENTICATE``; HTTP: a ``401``/``403`` status to a request that
  carried an ``Authorization`` header (a request without one is never a
  login: a browser's first 401 challenge is not a failure, nor is the 401
  carrying the next token of an NTLM or Negotiate handshake); Telnet: the
  server saying ``Login incorrect`` (or ``login failed``, ``authentication
  failed``).
- Reply codes are read at the start of each line of a segment; a reply
  split so that its code is not at a line start is missed (rare: servers
  write a reply at once).

Encrypted logins (SSH, RDP, and the TLS-wrapped IMAPS, POP3S, SMTPS, FTPS)
show no reply to read, so their evidence is the session's shape, a *short
session*: the server answered (it sent payload), the connection was closed
(FIN both ways or RST), within ``SHORT_SESSION_S`` seconds and with at most
``SHORT_SESSION_PACKETS`` packets from the client. A guessing tool connects,
tries a few passwords and goes; a user's session lasts and carries more. Many
short sessions from one client also come from scripted logins (automation
over SSH without connection reuse): the rule's threshold for them is higher.
SSH is known by its banner and RDP by its connection request on any port; the
TLS-wrapped services by their port alone (a TLS handshake does not say what
it carries; HTTPS is not a login service).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from netgptd.flow.config import STATE_CLOSED

if TYPE_CHECKING:
    from netgptd.flow.table import Flow

SCAN_SEGMENTS = 96  # payload segments of one flow looked at, both directions (a dozen FTP tries)
SCAN_BYTES = 1024  # bytes of each segment (an HTTP request's Authorization header sits behind its first lines)
SHORT_SESSION_S = 30.0
SHORT_SESSION_PACKETS = 60

# Encrypted login services by port (SSH and RDP are also known by their first segment, on any port).
ENCRYPTED_PORTS = {22: "ssh", 3389: "rdp", 993: "imaps", 995: "pop3s", 465: "smtps", 990: "ftps"}
ENCRYPTED = tuple(ENCRYPTED_PORTS.values())
SMTP_PORTS = (25, 587, 2525)
FTP_PORT = 21
TELNET_PORT = 23
IAC = 0xFF  # Telnet's "interpret as command" byte, which option negotiation starts with

HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ")
_AUTHORIZATION = re.compile(rb"\r?\n(?:proxy-)?authorization:", re.IGNORECASE)
_HTTP_DENIED = re.compile(rb"HTTP/\d(?:\.\d)? 40[13]\b")
_HTTP_INTERIM = re.compile(rb"HTTP/\d(?:\.\d)? 1\d\d\b")  # 100 Continue: the final status is still to come
# NTLM's and Negotiate's 401 that carries a token is the next leg of the handshake, not a refusal
_HTTP_CHALLENGE_LEG = re.compile(rb"\r\nwww-authenticate: *(?:ntlm|negotiate) +\S", re.IGNORECASE)
_TELNET_FAILED = re.compile(rb"login incorrect|login failed|authentication failed", re.IGNORECASE)
_TELNET_PASSWORD = re.compile(rb"password: ?$", re.IGNORECASE | re.MULTILINE)
# Client commands that are a login attempt (they set a login pending), and those of them that send a secret (an
# attempt counted); each protocol's failure reply to a pending login.
_LOGIN_COMMANDS = {"ftp": (b"USER", b"PASS"), "smtp": (b"AUTH",), "pop3": (b"USER", b"PASS", b"APOP", b"AUTH")}
_SECRET_COMMANDS = {"ftp": (b"PASS",), "smtp": (b"AUTH",), "pop3": (b"PASS", b"APOP", b"AUTH")}
_FAILURE_REPLY = {"ftp": b"530", "smtp": b"535", "pop3": b"-ERR"}


class LoginScanner:
    """What one flow showed of a login: its ``service``, the client's ``attempts`` and the server's ``failed``
    replies (cleartext services); ``budget`` is how many more payload segments it reads."""

    __slots__ = ("service", "attempts", "failed", "budget", "_pending", "_tag")

    def __init__(self, service: str, budget: int = SCAN_SEGMENTS) -> None:
        self.service = service  # "ftp/smtp" until the client's first command tells
        self.attempts = 0
        self.failed = 0
        self.budget = budget
        self._pending = False  # a login command waits for its reply
        self._tag = b""  # IMAP: the tag of the pending LOGIN

    @property
    def encrypted(self) -> bool:
        return self.service in ENCRYPTED

    def feed(self, toserver: bool, payload: bytes) -> None:
        """One payload segment (its first ``SCAN_BYTES``), in the flow's order."""
        self.budget -= 1
        if self.service == "http":
            self._http(toserver, payload)
        elif self.service == "telnet":
            if not toserver:
                self.failed += len(_TELNET_FAILED.findall(payload))
                self.attempts += len(_TELNET_PASSWORD.findall(payload))
        else:
            for line in payload.split(b"\n"):
                if toserver:
                    self._command(line.strip())
                else:
                    self._reply(line)

    def _http(self, toserver: bool, payload: bytes) -> None:
        if toserver:
            if payload.startswith(HTTP_METHODS):
                self._pending = _AUTHORIZATION.search(payload) is not None
                self.attempts += self._pending
        elif payload.startswith(b"HTTP/") and _HTTP_INTERIM.match(payload) is None:
            denied = _HTTP_DENIED.match(payload) is not None and _HTTP_CHALLENGE_LEG.search(payload) is None
            self.failed += self._pending and denied
            self._pending = False

    def _command(self, line: bytes) -> None:
        if not line:
            return
        if self.service == "imap":
            tag, _, rest = line.partition(b" ")
            if rest[:6].upper() == b"LOGIN " or rest[:13].upper() == b"AUTHENTICATE ":
                self._pending, self._tag = True, tag[:32]
                self.attempts += 1
            return
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if self.service == "ftp/smtp":
            if verb in (b"USER", b"PASS"):
                self.service = "ftp"
            elif verb in (b"EHLO", b"HELO", b"AUTH", b"MAIL"):
                self.service = "smtp"
            else:
                return
        if verb in _LOGIN_COMMANDS.get(self.service, ()) and (verb != b"AUTH" or _sasl(argument)):
            self._pending = True
            self.attempts += verb in _SECRET_COMMANDS[self.service]

    def _reply(self, line: bytes) -> None:
        if not self._pending or not line:
            return
        if self.service == "imap":
            if line.startswith(self._tag + b" "):
                self.failed += line[len(self._tag) + 1 :][:3].upper() == b"NO "
                self._pending = False
            return
        failure = _FAILURE_REPLY.get(self.service)
        if failure is None:
            return
        if line.startswith(failure):
            self.failed += 1
            self._pending = False
        elif line[:1] == b"3" and self.service != "pop3" or line.startswith(b"+ "):
            pass  # FTP's 331, SMTP's 334, POP3's SASL "+ ": the same login goes on
        elif line[:1] in b"245+-":
            self._pending = False

    def carried(self) -> LoginScanner:
        """The scanner of a flow's next record (after an active timeout): the same login, counts from zero."""
        if self.encrypted or self.budget <= 0:
            return self
        nxt = LoginScanner(self.service, self.budget)
        nxt._pending, nxt._tag = self._pending, self._tag
        return nxt


def _sasl(argument: bytes) -> bool:
    """An AUTH command's argument names a login mechanism: a bare AUTH lists them (POP3) or is an error, and
    FTP's AUTH TLS (on a port that did not say FTP, taken for SMTP) starts encryption."""
    return bool(argument) and argument[:3].upper() not in (b"TLS", b"SSL")


# One read-only scanner per encrypted service, and one for flows that are no login: they read nothing.
_SHARED = {name: LoginScanner(name, budget=0) for name in (*ENCRYPTED, "")}
NOT_A_LOGIN = _SHARED[""]


def shared_scanner(service: str) -> LoginScanner:
    """The read-only scanner of an encrypted login service (``""``: :data:`NOT_A_LOGIN`)."""
    return _SHARED[service]


def _rdp_connection_request(payload: bytes) -> bool:
    """RDP's first client segment: a TPKT (version 3) carrying an X.224 connection request whose data is RDP's
    (a ``Cookie:``, an RDP negotiation request, or nothing), not ISO-TSAP parameters (S7comm, MMS on port 102)."""
    if len(payload) < 11 or payload[0] != 3 or payload[1] != 0 or payload[5] & 0xF0 != 0xE0:
        return False
    data = payload[11:]
    return not data or data.startswith(b"Cookie: ") or (data[:1] == b"\x01" and data[2:4] == b"\x08\x00")


def scanner_for(server_port: int, toserver: bool, payload: bytes) -> LoginScanner:
    """The scanner of a TCP flow, from its first payload segment (and the server's port where the protocol
    does not name itself): a new one for a cleartext login protocol, a shared one for an encrypted login service,
    :data:`NOT_A_LOGIN` for anything else."""
    if payload.startswith(b"SSH-"):
        return _SHARED["ssh"]
    if payload[:1] == bytes((IAC,)) or server_port == TELNET_PORT:
        return LoginScanner("telnet")
    if toserver:
        if payload.startswith(HTTP_METHODS):
            return LoginScanner("http")
        if _rdp_connection_request(payload):
            return _SHARED["rdp"]
    elif payload.startswith(b"220"):
        return LoginScanner("smtp" if server_port in SMTP_PORTS else "ftp" if server_port == FTP_PORT else "ftp/smtp")
    elif payload.startswith(b"+OK"):
        return LoginScanner("pop3")
    elif payload.startswith((b"* OK", b"* PREAUTH")):
        return LoginScanner("imap")
    return _SHARED.get(ENCRYPTED_PORTS.get(server_port, ""), NOT_A_LOGIN)


def short_session(flow: Flow) -> bool:
    """The shape of a failed encrypted login (module docstring): answered, closed, brief, few client packets."""
    age_s = (flow.last_ns - flow.start_ns) / 1e9
    return (flow.state == STATE_CLOSED and flow.pkts_toclient > 0 and age_s <= SHORT_SESSION_S
            and flow.pkts_toserver <= SHORT_SESSION_PACKETS)  # fmt: skip


def login_evidence(flow: Flow) -> dict[str, Any] | None:
    """The flow record's ``netgpt.logins``: ``service`` with ``attempts`` and ``failed`` (cleartext) or
    ``short_session`` (encrypted); None for a flow that showed no login."""
    scanner = flow.logins
    if scanner is None or scanner is NOT_A_LOGIN:
        return None
    if scanner.encrypted:
        return {"service": scanner.service, "short_session": short_session(flow)}
    if not scanner.attempts and not scanner.failed:
        return None  # a login protocol's session without a login (anonymous mail delivery, plain web pages)
    return {"service": scanner.service, "attempts": scanner.attempts, "failed": scanner.failed}
