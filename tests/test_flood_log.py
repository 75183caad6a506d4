"""Bounded flood-flow logging (netgptd.flood_log) on real captures: a spoofed SYN flood built with the
project's frame builders and pcap writer, replayed through the rules and the EVE plugin into a file."""

from __future__ import annotations

import asyncio
import heapq
import json
from pathlib import Path
from typing import Any

import pytest

from netgptd.capture.file_source import PcapFileSource
from netgptd.capture.records import PacketRecord
from netgptd.config import ConfigError, FloodLogSettings, ModelSettings, Settings, parse_text
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.decode.packet import PROTO_TCP
from netgptd.eve import flow_start_seconds
from netgptd.pipeline import Pipeline
from netgptd.plugin_host import PluginHost
from netgptd.sdnotify import Notifier
from netgptd.replay import replay
from netgptd.rules import FlowRateRules
from netgptd.synth.flood import NS, spoofed_flood
from netgptd.synth.frames import ethernet, ip, tcp
from netgptd.synth.pcap_writer import write_pcap

START_NS = 1_767_225_600 * NS
VICTIM = "10.99.0.10"
CLIENT = "192.0.2.7"  # a real client of the victim during the flood: its answered sessions are always written


def _session(ts_ns: int, sport: int) -> list[PacketRecord]:
    """A whole TCP session of CLIENT with the victim's port 80 (handshake, request, reply, FIN)."""
    packets = [(CLIENT, VICTIM, sport, 80, "S", b""), (VICTIM, CLIENT, 80, sport, "SA", b""),
               (CLIENT, VICTIM, sport, 80, "A", b""), (CLIENT, VICTIM, sport, 80, "PA", b"GET / HTTP/1.0\r\n\r\n"),
               (VICTIM, CLIENT, 80, sport, "PA", b"HTTP/1.0 200 OK\r\n\r\n"), (CLIENT, VICTIM, sport, 80, "FA", b""),
               (VICTIM, CLIENT, 80, sport, "FA", b""), (CLIENT, VICTIM, sport, 80, "A", b"")]  # fmt: skip
    records = []
    for i, (src, dst, sp, dp, flags, payload) in enumerate(packets):
        frame = ethernet(ip(src, dst, PROTO_TCP, tcp(src, dst, sp, dp, flags, payload=payload)))
        records.append(PacketRecord(ts_ns + i * 1_000_000, LINKTYPE_ETHERNET, frame, len(frame)))
    return records


def flood_capture(path: Path, flows: int, rate: int, sessions: int = 0) -> None:
    """``flows`` spoofed SYNs to VICTIM at ``rate`` per second, and ``sessions`` real sessions spread over them."""
    spread = flows * NS // rate
    real = [r for n in range(sessions) for r in _session(START_NS + n * spread // max(1, sessions), 20000 + n)]
    with open(path, "wb") as stream:
        write_pcap(stream, heapq.merge(spoofed_flood(flows, rate, START_NS, VICTIM), real, key=lambda r: r.ts_ns),
                   LINKTYPE_ETHERNET)  # fmt: skip


def replay_to_eve(tmp_path: Path, capture: Path, settings: FloodLogSettings) -> tuple[list[dict[str, Any]], PluginHost]:
    """Replay ``capture`` as ``netgptd replay`` does (rules and EVE, in batches), the EVE file's events."""
    eve = tmp_path / "eve.json"
    host = PluginHost({"rules": {}, "eve": {"path": str(eve), "append": False}}, host="test", flood_log=settings)
    replay([capture], host.emit, batch_sink=host.emit_batch, finish=host.flush_flood_log)
    host.close()
    return [json.loads(line) for line in eve.read_text().splitlines()], host


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == kind]


def test_a_flood_past_its_budget_is_summarised_and_the_counts_add_up(tmp_path: Path) -> None:
    """25 s of spoofed SYNs at 400/s (10,000 flows, three windows) and 20 real sessions to the same victim."""
    capture = tmp_path / "flood.pcap"
    flood_capture(capture, 10_000, 400, sessions=20)
    events, host = replay_to_eve(tmp_path, capture, FloodLogSettings(flows_per_window=50, window_s=10.0))

    assert all(e["host"] == "test" for e in events)
    alerts = _of(events, "alert")
    assert [(a["netgpt"]["detector"], a["dest_ip"]) for a in alerts] == [("syn_flood", VICTIM)]
    flows, summaries = _of(events, "flow"), _of(events, "flood_summary")
    spoofed = [f for f in flows if f["src_ip"] != CLIENT]
    assert len([f for f in flows if f["src_ip"] == CLIENT]) == 20  # answered sessions: every one written
    summarised = sum(s["flood_summary"]["flows"] for s in summaries)
    assert len(spoofed) + summarised == 10_000  # every spoofed flow written or counted, none twice
    stats = _of(events, "stats")[-1]["netgpt"]["stats"]
    assert summarised == host.flood_log.summarised == stats["flood_log"]["summarised"]
    assert 3 <= len(summaries) <= 4 and all(s["dest_ip"] == VICTIM for s in summaries)
    for summary in summaries:
        body = summary["flood_summary"]
        assert body["written"] == 50 and body["detector"] == "syn_flood"
        assert body["packets"] == body["flows"] and body["bytes"] == 60 * body["flows"]
        assert body["top_destinations"] == [{"ip": VICTIM, "flows": body["flows"]}]
        assert len(body["top_sources"]) == 5 and body["others"]["sources"] == body["flows"] - 10
    # What went to EVE before the alert (the flows that crossed the threshold) plus a budget per window.
    alert_at = events.index(alerts[0])
    before = [e for e in events[:alert_at] if e["event_type"] == "flow" and e["src_ip"] != CLIENT]
    assert len(spoofed) - len(before) <= 50 * len(summaries)


def test_a_udp_reflection_is_summarised_by_its_victim(corpus: Path, tmp_path: Path) -> None:
    """A real BACnet amplification: replies from port 47808 of 3,559 devices to one victim, their flows' client
    (netgptd.flow.direction). They are written up to the budget, then counted into udp_reflection summaries
    named by the victim as their src_ip."""
    victim = "10.10.10.1"
    events, _ = replay_to_eve(tmp_path, corpus / "ddos" / "amp.UDP.bacnet.IOT.37810.pcapng",
                              FloodLogSettings(flows_per_window=50))  # fmt: skip
    assert ("udp_reflection", victim) in {(a["netgpt"]["detector"], a["src_ip"]) for a in _of(events, "alert")}
    summaries = [s for s in _of(events, "flood_summary") if s["flood_summary"]["detector"] == "udp_reflection"]
    assert summaries and all(s["src_ip"] == victim for s in summaries)
    replies = [f for f in _of(events, "flow") if f["src_ip"] == victim and f["flow"]["pkts_toserver"] == 0]
    assert len(replies) + sum(s["flood_summary"]["flows"] for s in summaries) == 3_559


def test_below_the_budget_every_flow_is_written(tmp_path: Path) -> None:
    capture = tmp_path / "flood.pcap"
    flood_capture(capture, 1_000, 400)
    events, host = replay_to_eve(tmp_path, capture, FloodLogSettings(flows_per_window=1_000))
    assert len(_of(events, "alert")) == 1
    assert len(_of(events, "flow")) == 1_000 and not _of(events, "flood_summary")
    assert host.flood_log.summarised == 0


def test_floods_past_max_floods_drop_the_oldest_with_its_summary(tmp_path: Path) -> None:
    """Two SYN floods on two victims, the second from 5 s on, with room to follow one: the first goes,
    summarised, when the second's alert comes, and its later flows are written again; every flow is still
    accounted for."""
    capture, other = tmp_path / "two.pcap", "10.99.0.20"
    floods = (spoofed_flood(3_000, 400, START_NS, VICTIM), spoofed_flood(1_000, 400, START_NS + 5 * NS, other, seed=2))
    with open(capture, "wb") as stream:
        write_pcap(stream, heapq.merge(*floods, key=lambda r: r.ts_ns), LINKTYPE_ETHERNET)
    events, host = replay_to_eve(tmp_path, capture, FloodLogSettings(flows_per_window=10, max_floods=1))
    alerts, summaries = _of(events, "alert"), _of(events, "flood_summary")
    assert [a["dest_ip"] for a in alerts] == [VICTIM, other]
    dropped = [s for s in summaries if s.get("dest_ip") == VICTIM]
    assert len(dropped) == 1 and events.index(dropped[0]) == events.index(alerts[1]) + 1  # when the second came
    after = [e for e in events[events.index(alerts[1]) :] if e["event_type"] == "flow" and e["dest_ip"] == VICTIM]
    assert after, "the first flood's later flows are written again"
    assert len(_of(events, "flow")) + sum(s["flood_summary"]["flows"] for s in summaries) == 4_000


def test_switched_off_every_flow_is_written(tmp_path: Path) -> None:
    capture = tmp_path / "flood.pcap"
    flood_capture(capture, 2_000, 400)
    events, host = replay_to_eve(tmp_path, capture, FloodLogSettings(enabled=False, flows_per_window=0))
    assert len(_of(events, "flow")) == 2_000 and len(_of(events, "alert")) == 1
    assert not _of(events, "flood_summary") and host.flood_log.status()["summarised"] == 0


def test_the_daemons_pipeline_bounds_a_flood_in_eve_and_counts_it_in_its_stats(tmp_path: Path) -> None:
    """The live pipeline (``netgptd run``'s, without a model) on the flood capture: rules and the EVE file
    through the plugin host built from its settings, as the service builds it."""
    capture, eve = tmp_path / "flood.pcap", tmp_path / "eve.json"
    flood_capture(capture, 5_000, 400, sessions=5)
    settings = Settings(model=ModelSettings(enabled=False), flood_log=FloodLogSettings(flows_per_window=20),
                        plugins={"rules": {}, "eve": {"path": str(eve), "append": False}})  # fmt: skip
    host = PluginHost(settings.plugins, host="test", flood_log=settings.flood_log)
    pipeline = Pipeline(settings, PcapFileSource(capture), host, None, Notifier.from_env({}))

    async def main() -> None:
        await asyncio.wait_for(pipeline.run(), 60)
        await host.aclose()

    asyncio.run(main())
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    flows, summaries = _of(events, "flow"), _of(events, "flood_summary")
    assert len(_of(events, "alert")) == 1 and summaries
    assert len([f for f in flows if f["src_ip"] == CLIENT]) == 5
    summarised = sum(s["flood_summary"]["flows"] for s in summaries)
    assert len(flows) + summarised == 5_005
    assert _of(events, "stats")[-1]["netgpt"]["stats"]["flood_log"]["summarised"] == summarised


def test_rules_raise_the_same_alerts_from_numeric_and_text_times(corpus: Path) -> None:
    """The rules read a flow event's start as a number; the same events read back from their JSON text (times
    parsed) raise the same alerts at the same flows."""
    captures = sorted((corpus / "ddos").iterdir())
    events: list[dict[str, Any]] = []
    replay(captures[:4], events.append)
    numeric, text = FlowRateRules(), FlowRateRules()
    flows = [e for e in events if e["event_type"] == "flow"]
    assert abs(flow_start_seconds(flows[0]) - flow_start_seconds(json.loads(json.dumps(flows[0])))) < 1e-6
    a = [alert for e in flows for alert in numeric.observe(e)]
    b = [alert for e in flows for alert in text.observe(json.loads(json.dumps(e)))]
    assert a and a == b


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("window_s", 0, "must be between 1 and 86400"),
    ("flows_per_window", -1, "must be between 0 and 10000000"),
    ("top", 1000, "must be between 1 and 100"),
    ("enabled", "yes", "expected bool"),
])  # fmt: skip
def test_settings_are_checked_naming_the_key(key: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[flood_log\] {key}: {reason}"):
        parse_text(f"[flood_log]\n{key} = {json.dumps(value)}\n", "netgptd.toml")
