"""replay() in-process on captures built by the test: drops, file boundaries."""

from __future__ import annotations

from pathlib import Path

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.decode.packet import PROTO_UDP
from netgptd.replay import replay
from netgptd.synth.frames import ethernet, ip, udp
from netgptd.synth.pcap_writer import Interface, PcapngWriter, write_pcap

NS = 1_000_000_000


def _datagram(ts_s: int, sport: int) -> PacketRecord:
    frame = ethernet(ip("10.0.0.1", "10.0.0.2", PROTO_UDP, udp("10.0.0.1", "10.0.0.2", sport, 53, b"q")))
    return PacketRecord(ts_s * NS, LINKTYPE_ETHERNET, frame, len(frame))


def _events(paths: list[Path]) -> list[dict]:
    events: list[dict] = []
    replay(paths, events.append)
    return events


def test_drops_recorded_in_a_capture_reach_the_stats_event(tmp_path: Path) -> None:
    path = tmp_path / "drops.pcapng"
    with open(path, "wb") as stream:
        writer = PcapngWriter(stream)
        writer.interface(Interface(LINKTYPE_ETHERNET))
        writer.packet(_datagram(100, 4000))
        writer.statistics(0, received=10, dropped_interface=3, dropped_os=4)
    stats = _events([path])[-1]["netgpt"]["stats"]
    assert stats["capture_drops"] == {"kernel": 4, "interface": 3}


def test_a_capture_without_statistics_reports_no_drops(tmp_path: Path) -> None:
    path = tmp_path / "plain.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, [_datagram(100, 4000)])
    assert _events([path])[-1]["netgpt"]["stats"]["capture_drops"] == {}


def test_flows_do_not_span_files(tmp_path: Path) -> None:
    """The same 5-tuple in two files is two flows, each flushed at its file's end."""
    paths = []
    for name, ts in (("a.pcap", 100), ("b.pcap", 105)):
        paths.append(tmp_path / name)
        with open(paths[-1], "wb") as stream:
            write_pcap(stream, [_datagram(ts, 4000)])
    flows = [e for e in _events(paths) if e["event_type"] == "flow"]
    assert len(flows) == 2
    assert [f["flow"]["reason"] for f in flows] == ["shutdown", "shutdown"]
    assert flows[0]["flow_id"] != flows[1]["flow_id"]
