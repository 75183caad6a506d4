"""The rule detectors under spoofed-source floods: every table stays within its cap, memory stays put,
and the floods (and a real scanner inside them) are still found.

The events are EVE flow records shaped as the pipeline writes them (``netgptd.eve.flow_event``), built
here directly because hundreds of thousands of flows through pcap and the flow table would take minutes.
"""

from __future__ import annotations

import random
import tracemalloc
from typing import Any, Iterable, Iterator

import pytest

from netgptd.eve import event_seconds, timestamp
from netgptd.plugin_host import PluginHost
from netgptd.rule_windows import Cooldowns, DistinctWindow, WindowShape, WindowTable
from netgptd.rules import FlowRateRules, RuleSettings

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
PEAK_MIB = 6  # what the capped rules may peak at while reading 12k flows (the old ones: about 36 MiB)
SYN_VICTIM, UDP_VICTIM, SCANNED, SCANNER = "10.0.0.10", "10.0.0.20", "10.0.0.30", "203.0.113.66"


def _flow(n: int, ts_ns: int, src: str, sport: int, dst: str, dport: int, proto: str, *, syn_only: bool = True,
          refused: bool = False) -> dict[str, Any]:  # fmt: skip
    when = timestamp(ts_ns)
    event: dict[str, Any] = {
        "timestamp": when, "flow_id": n, "event_type": "flow", "src_ip": src, "src_port": sport, "dest_ip": dst,
        "dest_port": dport, "proto": proto, "app_proto": None, "community_id": f"1:{n}",
        "flow": {"pkts_toserver": 1, "pkts_toclient": int(refused), "bytes_toserver": 60,
                 "bytes_toclient": 60 * int(refused), "start": when, "end": when, "state": "new",
                 "reason": "timeout"},
    }  # fmt: skip
    if proto == "TCP":
        server = "14" if refused else "00"  # RST-ACK, or nothing back
        event["tcp"] = {"tcp_flags": "02" if syn_only else "12", "tcp_flags_ts": "02", "tcp_flags_tc": server}
    return event


def _spoofed(rng: random.Random) -> str:
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def flood(total: int, rate: int = 20_000, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``total`` flows at ``rate`` per second, in turn: a spoofed SYN flood on one victim, a spoofed UDP
    flood on another, spoofed one-probe port sweeps of random hosts; and one real scanner probing
    30 ports of one host, spread over the run's first 3 seconds at most (faster than the threshold)."""
    rng = random.Random(seed)
    scan_every = max(1, min(total, 3 * rate) // 30)
    for n in range(total):
        ts = T0 + n * NS // rate
        if n % scan_every == scan_every // 2 and n < 30 * scan_every:
            yield _flow(n, ts, SCANNER, 40000, SCANNED, 1 + n // scan_every, "TCP", refused=True)
        elif n % 3 == 0:
            yield _flow(n, ts, _spoofed(rng), rng.randrange(1024, 65536), SYN_VICTIM, 80, "TCP")
        elif n % 3 == 1:
            yield _flow(n, ts, _spoofed(rng), rng.randrange(1024, 65536), UDP_VICTIM, 53, "UDP")
        else:
            target = f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            yield _flow(n, ts, _spoofed(rng), 40000, target, rng.randrange(1, 1024), "TCP", refused=True)


def _run(rules: FlowRateRules, events: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The alerts raised, and tracemalloc's peak in MiB while the rules read the events (a list made
    beforehand is not counted; events made on the way are, one at a time)."""
    alerts: list[dict[str, Any]] = []
    tracemalloc.start()
    try:
        for event in events:
            alerts += rules.observe(event)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return alerts, peak


def _check_detection(alerts: list[dict[str, Any]]) -> None:
    first = {}
    for alert in alerts:
        rule = alert["netgpt"]["detector"]
        first.setdefault((rule, alert["src_ip"] if "sweep" in rule else alert["dest_ip"]), event_seconds(alert["timestamp"]))
    start = T0 / NS
    assert first[("syn_flood", SYN_VICTIM)] - start < 10
    assert first[("udp_flood", UDP_VICTIM)] - start < 10
    assert ("port_sweep", SCANNER) in first  # found amid the one-probe sweeps of spoofed sources


def test_spoofed_floods_stay_within_caps_and_memory_bound() -> None:
    """12k spoofed flows against tables capped at 500 keys."""
    rules = FlowRateRules(RuleSettings(max_keys=500))
    alerts, peak = _run(rules, list(flood(12_000)))
    status = rules.status()
    assert all(n <= 500 for n in status["tracked"].values())
    assert status["evicted"]["port_sweep"] > 7_000 and status["evicted"]["host_sweep"] > 7_000
    assert status["sketched"]["syn_flood"] > 3_000 and status["cooldowns"] <= 500
    assert peak < PEAK_MIB, f"tracemalloc peak {peak:.1f} MiB"
    _check_detection(alerts)


@pytest.mark.slow
def test_300k_spoofed_flows_at_default_caps() -> None:
    """300k spoofed flows (15 s at 20k flows/s) at the default caps: the peak stays that of full tables."""
    rules = FlowRateRules()
    alerts, peak = _run(rules, flood(300_000))
    status = rules.status()
    assert all(n <= RuleSettings().max_keys for n in status["tracked"].values())
    assert status["evicted"]["port_sweep"] > 200_000
    assert peak < 60, f"tracemalloc peak {peak:.1f} MiB"
    _check_detection(alerts)


def test_flood_window_holds_its_cap_and_estimates_the_rest() -> None:
    """50k sources in one window: exact up to the cap, a sketch past it (about 3 % standard error)."""
    window = DistinctWindow(WindowShape(span=10.0, exact_cap=400))
    for n in range(50_000):  # int values: their hash, hence the estimate, is the same in every run
        window.add(1000.0 + n * 5 / 50_000, n)
    assert window.size == 400 and window.reached(400) and window.sketched == 49_600
    assert abs(window.distinct() - 50_000) < 0.1 * 50_000
    window.add(1011.0, "late")  # the slices of the first second have left the window
    assert 35_000 < window.distinct() < 45_000
    window.add(1030.0, "alone")
    assert window.distinct() == 1 and window.size == 1


def test_window_counts_exactly_below_its_cap() -> None:
    window = DistinctWindow(WindowShape(span=10.0, exact_cap=400))
    for n in range(300):
        window.add(1000.0 + n / 100, n % 150)
    window.add(1000.5, 3)  # a flow that started before the latest: its own slice
    assert window.distinct() == 150 and window.sketched == 0
    assert not window.reached(151) and window.reached(150)


def test_table_evicts_one_flow_windows_before_a_busy_one() -> None:
    table = WindowTable(WindowShape(span=10.0, exact_cap=50), max_keys=100)
    table.window("scanner", 1000.0).add(1000.0, 1)
    table.window("scanner", 1000.0).add(1000.0, 2)
    for n in range(1000):
        table.window(n, 1000.0 + n / 1000).add(1000.0 + n / 1000, n)
    assert len(table) == 100 and table.evicted == 901 and "scanner" in table._windows
    table.window("later", 1020.0)  # the others were idle a whole span: they leave, a few per new key
    assert table.evicted == 901 and len(table) == 99


def test_cooldowns_forget_ended_ones_then_the_soonest_to_end() -> None:
    quiet = Cooldowns(max_keys=3)
    for n in range(3):
        quiet.start(n, 100.0 + n, now=40.0 + n)
    quiet.start("late", 160.0, now=100.5)  # 0 ended at 100: it leaves, nothing evicted
    assert len(quiet) == 3 and quiet.evicted == 0 and not quiet.quiet(0, 100.5)
    quiet.start("later", 161.0, now=100.6)
    assert quiet.evicted == 1 and not quiet.quiet(1, 100.6) and quiet.quiet("late", 159.0)


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys must be at least 1, not 0"):
        FlowRateRules(RuleSettings(max_keys=0))


def test_rules_plugin_reports_its_tables_in_status() -> None:
    host = PluginHost({"rules": {"max_keys": 100}})
    for event in flood(3_000):
        host.emit(event)
    status = host.status()["rules"]
    assert status["tracked"]["port_sweep"] == 100 and status["evicted"]["port_sweep"] > 800
    assert set(status) == {"tracked", "evicted", "sketched", "cooldowns", "cooldowns_evicted"}


def test_window_keeps_late_flows_but_not_without_bound() -> None:
    """Flows end out of start order (a refused probe at once, an unanswered one a minute later): a late one
    still counts, and late ones from all over time keep at most two spans of slices."""
    window = DistinctWindow(WindowShape(span=10.0, exact_cap=400))
    window.add(1060.0, "refused")
    window.add(1000.0, "unanswered")
    assert window.distinct() == 2
    for n in range(1000):
        window.add(float(n), n)
    assert len(window._slices) <= 20 and window.distinct() <= 20
