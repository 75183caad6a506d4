"""Flow-rate rule detectors on captures built by the test, and on the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.replay import replay
from netgptd.rules import FlowRateRules, RuleSettings
from netgptd.synth.demo import write_demo_capture
from netgptd.synth.frames import ethernet, ip, tcp, udp
from netgptd.synth.pcap_writer import write_pcap

NS = 1_000_000_000
VICTIM = "10.0.0.10"


def _frame(ts_ns: int, packet: bytes) -> PacketRecord:
    frame = ethernet(packet)
    return PacketRecord(ts_ns, LINKTYPE_ETHERNET, frame, len(frame))


def _alerts(tmp_path: Path, records: list[PacketRecord], settings: RuleSettings | None = None) -> list[dict]:
    path = tmp_path / "built.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, sorted(records, key=lambda r: r.ts_ns))
    rules = FlowRateRules(settings)
    alerts: list[dict] = []
    replay([path], lambda event: alerts.extend(rules.observe(event)))
    return alerts


def _syn(ts: int, src: str, sport: int, dport: int) -> PacketRecord:
    return _frame(ts, ip(src, VICTIM, PROTO_TCP, tcp(src, VICTIM, sport, dport, "S")))


def test_syn_flood_from_many_sources_raises_one_alert_naming_the_victim(tmp_path: Path) -> None:
    start = 1_700_000_000 * NS
    records = [_syn(start + i * NS // 500, f"198.51.{i // 250}.{i % 250 + 1}", 1024 + i, 80) for i in range(600)]
    alerts = _alerts(tmp_path, records)
    assert [a["netgpt"]["detector"] for a in alerts] == ["syn_flood"]
    assert alerts[0]["dest_ip"] == VICTIM and alerts[0]["alert"]["category"] == "dos"
    assert alerts[0]["alert"]["severity"] == 1


def test_port_sweep_names_scanner_and_victim(tmp_path: Path) -> None:
    start = 1_700_000_000 * NS
    scanner = "203.0.113.66"
    records = []
    for port in range(1, 101):
        t = start + port * NS // 100
        records.append(_syn(t, scanner, 40000, port))
        records.append(_frame(t + 1000, ip(VICTIM, scanner, PROTO_TCP, tcp(VICTIM, scanner, port, 40000, "RA"))))
    alerts = _alerts(tmp_path, records)
    assert [(a["netgpt"]["detector"], a["src_ip"], a["dest_ip"]) for a in alerts] == [("port_sweep", scanner, VICTIM)]


def _udp_to_victim(i: int, sport: int, dport: int) -> PacketRecord:
    src = f"192.0.2.{i % 250 + 1}"
    return _frame(1_700_000_000 * NS + i * NS // 1000, ip(src, VICTIM, PROTO_UDP, udp(src, VICTIM, sport, dport,
                                                                                         b"x" * 400)))  # fmt: skip


def test_udp_flood_and_quiet_below_thresholds(tmp_path: Path) -> None:
    flood = [_udp_to_victim(i, 40000 + i, 2000 + i) for i in range(400)]  # the victim's ports are the servers'
    alerts = _alerts(tmp_path, flood)
    assert [(a["netgpt"]["detector"], a["dest_ip"]) for a in alerts] == [("udp_flood", VICTIM)]
    assert _alerts(tmp_path, flood[:150]) == []


def test_udp_replies_from_many_servers_are_a_reflection_naming_its_victim(tmp_path: Path) -> None:
    """Datagrams from port 53 to the victim's high ports: the senders are the servers (netgptd.flow.direction),
    the victim the client that sent nothing."""
    flood = [_udp_to_victim(i, 53, 2000 + i) for i in range(400)]
    alerts = _alerts(tmp_path, flood)
    assert [(a["netgpt"]["detector"], a["src_ip"]) for a in alerts] == [("udp_reflection", VICTIM)]
    assert alerts[0]["alert"]["signature_id"] == 1_000_007
    assert _alerts(tmp_path, flood[:150]) == []


def test_cooldown_keeps_one_alert_per_window(tmp_path: Path) -> None:
    start = 1_700_000_000 * NS
    records = [_syn(start + i * NS // 500, f"198.51.{i // 250}.{i % 250 + 1}", 1024 + i, 80) for i in range(2000)]
    assert len(_alerts(tmp_path, records, RuleSettings(cooldown_s=60))) == 1


def test_demo_office_traffic_raises_only_the_sweep(tmp_path: Path) -> None:
    alerts = _alerts_of(write_demo_capture(tmp_path / "demo.pcapng"))
    assert [a["netgpt"]["detector"] for a in alerts] == ["port_sweep"]


def _alerts_of(path: Path) -> list[dict]:
    rules = FlowRateRules()
    alerts: list[dict] = []
    replay([path], lambda event: alerts.extend(rules.observe(event)))
    return alerts


@pytest.mark.corpus
def test_corpus_floods_and_scans_per_capture(corpus: Path) -> None:
    """Per capture: the floods the rules are built for are found; everyday captures stay quiet."""
    found = {name: {a["netgpt"]["detector"] for a in _alerts_of(corpus / "ddos" / name)} for name in (
        "pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng", "amp.TCP.reflection.SYNACK.pcap", "amp.UDP.bacnet.IOT.37810.pcapng")}  # fmt: skip
    assert found == {
        "pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng": {"syn_flood"},
        "amp.TCP.reflection.SYNACK.pcap": {"synack_reflection"},
        # BACnet replies from port 47808 land on the victim (udp_reflection); its other unanswered datagrams, between
        # ports that say nothing of their roles, are a udp_flood to it
        "amp.UDP.bacnet.IOT.37810.pcapng": {"udp_reflection", "udp_flood"},
    }
    assert "port_sweep" in {a["netgpt"]["detector"] for a in _alerts_of(corpus / "ndpi" / "pcap" / "synscan.pcap")}
    for quiet in ("1kxun.pcap", "443-chrome.pcap", "youtube_quic.pcap", "dns_long.pcap"):
        path = corpus / "ndpi" / "pcap" / quiet
        if path.exists():
            assert _alerts_of(path) == [], quiet


@pytest.mark.corpus
def test_corpus_bruteforce_from_failed_logins(corpus: Path) -> None:
    """A real FTP password cracking run (700 wrong logins in 45 s) gives the alert, with its service; captures of
    logins that succeed, refused mail, NTLM-authenticated WinRM and plain web browsing stay quiet."""
    traces = corpus / "extra" / "chrissanders__packets"
    cracking = traces / "ppa1e__ftp-crack.pcap"
    if not cracking.exists():
        pytest.skip(f"{cracking} not in the corpus")
    alerts = [(a["netgpt"]["detector"], a["src_ip"], a["dest_ip"], a["netgpt"]["logins"]) for a in _alerts_of(cracking)]
    assert alerts == [("bruteforce", "10.234.125.254", "10.121.70.151", {"service": "ftp"})]
    quiet = [corpus / "ndpi" / "pcap" / name for name in ("ftp.pcap", "ftp_failed.pcap", "pop3.pcap", "imap.pcap",
                                                           "telnet.pcap", "smtp.pcap", "http.pcapng")]  # fmt: skip
    quiet += [corpus / "extra" / "elcabezzonn__Pcaps" / "winrm_psremote_05-16.pcap"]
    quiet += [traces / name for name in ("http_dvwa_clearlogin.pcapng", "http_espn.pcapng", "http_google.pcapng")]
    for path in quiet:
        if path.exists():
            assert not [a for a in _alerts_of(path) if a["netgpt"]["detector"] == "bruteforce"], path.name
