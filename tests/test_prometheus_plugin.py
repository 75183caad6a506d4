"""The Prometheus plugin, scraped over real HTTP: what /metrics says equals what the events said."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from netgptd.eve import stats_event
from netgptd.flow.table import Flow
from netgptd.plugin_host import PluginError, PluginHost, SensorContext, load_plugin
from netgptd.replay import replay
from netgptd_plugins.prometheus import PrometheusPlugin

# A small capture with many server ports, decode errors and skipped packets (84 flows).
CAPTURE = "ndpi/pcap/fuzz-2020-02-16-11740.pcap"
MODEL = {"name": "netgpt-test", "version": "3", "provider": "cpu"}
# Label names the exporter may use: none can hold an address, a port or a flow id.
ALLOWED_LABELS = {"version", "name", "provider", "where", "reason", "kind", "app", "attack", "category", "severity",
                  "source", "queue", "plugin", "le"}  # fmt: skip

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class PortVerdicts:
    """Stands in for the model: verdicts from the server port, so they vary across flows."""

    def verdicts(self, flows: Sequence[Flow]) -> list[dict[str, Any]]:
        return [
            {
                "app": ("DNS", "HTTP", "TLS")[f.server_port % 3],
                "app_confidence": (f.server_port % 10 + 1) / 10,
                "attack": ("benign", "scan", "dos")[f.server_port // 3 % 3],
                "attack_confidence": 0.5 + f.server_port % 5 / 10,
                "model": "netgpt-test",
            }
            for f in flows
        ]


def free_listen() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def scrape(listen: str) -> tuple[str, Samples]:
    """The /metrics text and its samples by (name, labels)."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture(scope="module")
def capture_path(corpus: Path) -> Path:
    path = corpus / CAPTURE
    if not path.is_file():
        pytest.skip(f"{CAPTURE} not in the corpus at {corpus}")
    return path


@pytest.fixture(scope="module")
def classified_events(capture_path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    replay([capture_path], events.append, classifier=PortVerdicts(), alert_confidence=0.9)
    return events


def run_plugin(events: list[dict[str, Any]], sensor: SensorContext,
               batches: Sequence[tuple[int, float]] = ()) -> tuple[str, Samples]:  # fmt: skip
    """Start a plugin on a free port, feed it ``events`` and ``batches``, scrape, close; the scrape."""
    listen = free_listen()
    plugin = PrometheusPlugin(listen=listen)

    async def main() -> tuple[str, Samples]:
        plugin.netgpt_start(sensor)
        try:
            for event in events:
                plugin.netgpt_event(event)
            for size, seconds in batches:
                plugin.netgpt_batch(size, seconds)
            return scrape(listen)
        finally:
            plugin.netgpt_close()

    result = asyncio.run(main())
    with pytest.raises(urllib.error.URLError):  # closed: the port is released
        scrape(listen)
    return result


def test_replayed_events_are_exported_exactly(classified_events: list[dict[str, Any]]) -> None:
    flows = [e for e in classified_events if e["event_type"] == "flow"]
    alerts = [e for e in classified_events if e["event_type"] == "alert"]
    stats = classified_events[-1]["netgpt"]["stats"]
    batches = [(1, 0.00005), (3, 0.0003), (200, 0.02), (2000, 3.0)]
    assert alerts and len({e["netgpt"]["app"] for e in flows}) > 1, "the capture should give several apps and alerts"
    assert stats["decode_errors"] and stats["skipped"]

    _, samples = run_plugin(classified_events, SensorContext(version="9.9.9", model=MODEL), batches)

    assert value(samples, "netgpt_build_info", version="9.9.9") == 1
    assert value(samples, "netgpt_model_info", **MODEL) == 1
    # Totals from the stats event.
    assert value(samples, "netgpt_packets_total") == stats["packets"]
    assert value(samples, "netgpt_bytes_total") == stats["bytes"]
    assert value(samples, "netgpt_flows_total") == stats["flows"]
    assert value(samples, "netgpt_flows_active") == stats["active_flows"]
    assert value(samples, "netgpt_flow_emergency_total") == stats["emergency_entered"]
    assert value(samples, "netgpt_fragments_unmatched_total") == stats["fragments_unmatched"]
    assert value(samples, "netgpt_flows_classified_total") == stats["classified"]
    for key, name, label in [("decode_errors", "netgpt_decode_errors_total", "reason"),
                             ("skipped", "netgpt_skipped_packets_total", "kind"),
                             ("evictions", "netgpt_flow_evictions_total", "reason")]:  # fmt: skip
        exported = {dict(lbl)[label]: v for (n, lbl), v in samples.items() if n == name}
        assert exported == stats[key], name
    # Not in a replay's stats: no series.
    assert not {"netgpt_uptime_seconds", "netgpt_queue_depth", "netgpt_mqtt_connected"} & names(samples)

    # Per-verdict counts from the flow events.
    ended = Counter((e["netgpt"]["app"], e["netgpt"]["attack"]) for e in flows)
    exported = {(dict(lbl)["app"], dict(lbl)["attack"]): v for (n, lbl), v in samples.items()
                if n == "netgpt_flows_ended_total"}  # fmt: skip
    assert exported == ended
    for app in {app for app, _ in ended}:
        mine = [e["flow"] for e in flows if e["netgpt"]["app"] == app]
        assert value(samples, "netgpt_flow_bytes_total", app=app) == sum(
            f["bytes_toserver"] + f["bytes_toclient"] for f in mine)
        assert value(samples, "netgpt_flow_packets_total", app=app) == sum(
            f["pkts_toserver"] + f["pkts_toclient"] for f in mine)
    for key in ("app_confidence", "attack_confidence"):
        seen = [e["netgpt"][key] for e in flows]
        assert value(samples, f"netgpt_{key}_count") == len(seen)
        assert value(samples, f"netgpt_{key}_sum") == pytest.approx(sum(seen))
        for le in ("0.5", "0.9", "1.0"):
            assert value(samples, f"netgpt_{key}_bucket", le=le) == sum(c <= float(le) for c in seen), (key, le)

    # Alerts by their labels.
    raised = Counter((a["alert"]["category"], str(a["alert"]["severity"]), a["netgpt"]["detector"]) for a in alerts)
    exported = {(dict(lbl)["category"], dict(lbl)["severity"], dict(lbl)["source"]): v
                for (n, lbl), v in samples.items() if n == "netgpt_alerts_total"}  # fmt: skip
    assert exported == raised

    # Inference histograms from netgpt_batch.
    for le, count in [("0.0001", 1), ("0.0005", 2), ("0.025", 3), ("2.5", 3), ("+Inf", 4)]:
        assert value(samples, "netgpt_inference_duration_seconds_bucket", le=le) == count, le
    assert value(samples, "netgpt_inference_duration_seconds_sum") == pytest.approx(3.02035)
    for le, count in [("1.0", 1), ("2.0", 1), ("4.0", 2), ("256.0", 3), ("1024.0", 3), ("+Inf", 4)]:
        assert value(samples, "netgpt_inference_batch_size_bucket", le=le) == count, le

    # No address anywhere in the labels, and no label that could hold a port or a flow id.
    for name, labels in samples:
        assert {k for k, _ in labels} <= ALLOWED_LABELS, name
        for _, label_value in labels:
            with pytest.raises(ValueError):
                ipaddress.ip_address(label_value)


def test_unclassified_flows_and_no_model(capture_path: Path) -> None:
    events: list[dict[str, Any]] = []
    replay([capture_path], events.append)  # no classifier: netgpt holds nulls
    flows = [e for e in events if e["event_type"] == "flow"]
    del flows[0]["netgpt"]  # and where it is missing altogether

    _, samples = run_plugin(events, SensorContext())

    assert {n for n, _ in samples if n.endswith("_info")} == {"netgpt_build_info"}
    assert value(samples, "netgpt_flows_ended_total", app="unclassified", attack="unclassified") == len(flows)
    assert value(samples, "netgpt_flow_packets_total", app="unclassified") == sum(
        e["flow"]["pkts_toserver"] + e["flow"]["pkts_toclient"] for e in flows)
    assert value(samples, "netgpt_app_confidence_count") == 0


def full_stats(n: int) -> dict[str, Any]:
    """A live pipeline's stats object (every key), its numbers derived from ``n``."""
    return {
        "uptime": 10.5 * n, "packets": 100 * n, "bytes": 1000 * n,
        "capture_drops": {"kernel": 2 * n, "interface": n},
        "decode_errors": {"ipv4_bad_version": n}, "skipped": {"arp": 3 * n},
        "flows": 7 * n, "active_flows": 5, "evictions": {"timeout": 4 * n, "emergency": n},
        "emergency_entered": n, "fragments_unmatched": 0, "classified": 6 * n,
        "unclassified": {"overload": n, "no_payload": 2 * n}, "alerts": n,
        "queues": {"capture": 12, "classify": 3}, "queue_limits": {"capture": 4096, "classify": 1024},
        "watchdog": {"pings": 9 * n, "stalls": 1}, "plugin_errors": {"mqtt": n},
        "flood_log": {"summarised": 900 * n, "summaries": 3 * n, "floods": 2},
        "plugins": {"mqtt": {"connected": 1, "outbox_depth": 17, "outbox_dropped": n, "published": 50 * n,
                             "reconnects": 2},
                    "ask": {"connected": 1, "received": 30 * n, "accepted": 5 * n, "rate_limited": 20 * n,
                            "refused": {"unsigned": 3 * n, "dangerous": n}, "dropped": {"busy": n},
                            "malformed": {"too_deep": n}},
                    "rules": {"tracked": {"syn_flood": 3, "port_sweep": 10_000}, "evicted": {"port_sweep": 40 * n},
                              "sketched": {"syn_flood": 5 * n}, "cooldowns": 2, "cooldowns_evicted": n}},
    }  # fmt: skip


def key(metric: str, /, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return metric, frozenset(labels.items())


EXPECTED_FULL = {  # full_stats(2), as exported
    key("netgpt_uptime_seconds"): 21.0, key("netgpt_packets_total"): 200, key("netgpt_bytes_total"): 2000,
    key("netgpt_capture_drops_total", where="kernel"): 4, key("netgpt_capture_drops_total", where="interface"): 2,
    key("netgpt_decode_errors_total", reason="ipv4_bad_version"): 2, key("netgpt_skipped_packets_total", kind="arp"): 6,
    key("netgpt_flows_total"): 14, key("netgpt_flows_active"): 5,
    key("netgpt_flow_evictions_total", reason="timeout"): 8, key("netgpt_flow_evictions_total", reason="emergency"): 2,
    key("netgpt_flow_emergency_total"): 2, key("netgpt_fragments_unmatched_total"): 0,
    key("netgpt_flows_classified_total"): 12,
    key("netgpt_flows_unclassified_total", reason="overload"): 2,
    key("netgpt_flows_unclassified_total", reason="no_payload"): 4,
    key("netgpt_queue_depth", queue="capture"): 12, key("netgpt_queue_depth", queue="classify"): 3,
    key("netgpt_queue_capacity", queue="capture"): 4096, key("netgpt_queue_capacity", queue="classify"): 1024,
    key("netgpt_watchdog_pings_total"): 18, key("netgpt_watchdog_stalls_total"): 1,
    key("netgpt_plugin_errors_total", plugin="mqtt"): 2,
    key("netgpt_flows_summarised_total"): 1800, key("netgpt_flood_summaries_total"): 6, key("netgpt_floods_followed"): 2,
    key("netgpt_mqtt_connected"): 1, key("netgpt_mqtt_outbox_depth"): 17, key("netgpt_mqtt_outbox_dropped_total"): 2,
    key("netgpt_mqtt_published_total"): 100, key("netgpt_mqtt_reconnects_total"): 2,
    key("netgpt_ask_connected"): 1, key("netgpt_ask_received_total"): 60, key("netgpt_ask_accepted_total"): 10,
    key("netgpt_ask_rate_limited_total"): 40, key("netgpt_ask_refused_total", reason="unsigned"): 6,
    key("netgpt_ask_refused_total", reason="dangerous"): 2, key("netgpt_ask_dropped_total", reason="busy"): 2,
    key("netgpt_ask_malformed_total", reason="too_deep"): 2,
    key("netgpt_rules_windows", rule="syn_flood"): 3, key("netgpt_rules_windows", rule="port_sweep"): 10_000,
    key("netgpt_rules_evicted_total", rule="port_sweep"): 80, key("netgpt_rules_sketched_total", rule="syn_flood"): 10,
    key("netgpt_rules_cooldowns"): 2, key("netgpt_rules_cooldowns_evicted_total"): 2,
}  # fmt: skip


def test_every_stats_key_is_exported_from_the_latest_snapshot() -> None:
    listen = free_listen()
    plugin = PrometheusPlugin(listen=listen)

    async def main() -> None:
        plugin.netgpt_start(SensorContext(version="1.0", model=MODEL))
        try:
            plugin.netgpt_event(stats_event(0, full_stats(1)))
            emitted = stats_event(0, full_stats(2))
            plugin.netgpt_event(emitted)
            emitted["netgpt"]["stats"]["packets"] = -1  # the pipeline reusing its dict must not show
            emitted["netgpt"]["stats"]["queues"]["capture"] = -1
            _, samples = scrape(listen)
            assert {k: samples.get(k) for k in EXPECTED_FULL} == EXPECTED_FULL

            later = full_stats(3)
            del later["plugins"], later["queues"]["classify"]  # the MQTT plugin stopped; a queue went
            plugin.netgpt_event(stats_event(0, later))
            _, samples = scrape(listen)
            assert value(samples, "netgpt_packets_total") == 300
            assert value(samples, "netgpt_queue_depth", queue="capture") == 12
            assert value(samples, "netgpt_queue_depth", queue="classify") is None
            assert not {n for n in names(samples) if n.startswith("netgpt_mqtt_")}
        finally:
            plugin.netgpt_close()

    asyncio.run(main())


def test_scrapes_see_one_snapshot_whole() -> None:
    """Scraped while snapshots are replaced: every scrape's numbers come from the same snapshot."""
    listen = free_listen()
    plugin = PrometheusPlugin(listen=listen)
    seen: list[tuple[float | None, float | None, float | None]] = []
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            _, samples = scrape(listen)
            seen.append(tuple(value(samples, n) for n in ("netgpt_packets_total", "netgpt_bytes_total",
                                                          "netgpt_watchdog_pings_total")))  # fmt: skip

    async def main() -> None:
        plugin.netgpt_start(SensorContext())
        thread = threading.Thread(target=scraper)
        thread.start()
        try:
            for n in range(1, 400):
                plugin.netgpt_event(stats_event(0, full_stats(n)))
                await asyncio.sleep(0.001)
        finally:
            done.set()
            thread.join()
            plugin.netgpt_close()

    asyncio.run(main())
    complete = [s for s in seen if s[0] is not None]
    assert len(complete) > 5
    assert all(b == 10 * p and pings == 9 * p / 100 for p, b, pings in complete)
    assert [p for p, _, _ in complete] == sorted(p for p, _, _ in complete)


@pytest.mark.parametrize("listen", ["9400", "localhost", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000",
                                    "127.0.0.1:0", "::1:9400", "[not-v6]:9400", "[::1:9400", "bad host:9400", ""])
def test_bad_listen_is_refused_naming_it(listen: str) -> None:
    with pytest.raises(ValueError, match="listen") as raised:
        PrometheusPlugin(listen=listen)
    assert repr(listen) in str(raised.value)
    with pytest.raises(PluginError, match=r"\[plugins.prometheus\]"):
        load_plugin("prometheus", {"listen": listen})


@pytest.mark.parametrize("listen", ["127.0.0.1:9400", "localhost:1", "[::1]:9400", "0.0.0.0:65535", "sensor-3.lan:94"])
def test_good_listen_is_accepted(listen: str) -> None:
    assert PrometheusPlugin(listen=listen).listen == listen


def test_port_in_use_is_logged_and_the_daemon_goes_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        plugin = PrometheusPlugin(listen=listen)

        async def main() -> None:
            plugin.netgpt_start(SensorContext())
            plugin.netgpt_event(stats_event(0, full_stats(1)))
            plugin.netgpt_batch(4, 0.001)
            plugin.netgpt_close()

        with capture_logs() as logs:
            asyncio.run(main())
    assert len(logs) == 1
    assert logs[0]["event"] == "metrics_listen_failed" and logs[0]["log_level"] == "error"
    assert logs[0]["listen"] == listen and "in use" in logs[0]["error"]


def test_runs_through_the_plugin_host() -> None:
    """Loaded from its entry point, its hooks match the specs and none of them fails."""
    listen = free_listen()
    host = PluginHost({"prometheus": {"listen": listen}})

    async def main() -> Samples:
        await host.start(SensorContext(version="1.0"))
        host.emit(stats_event(0, full_stats(1)))
        host.batch(8, 0.002)
        try:
            return scrape(listen)[1]
        finally:
            await host.aclose()

    samples = asyncio.run(main())
    assert not host.errors
    assert value(samples, "netgpt_packets_total") == 100
    assert value(samples, "netgpt_inference_batch_size_count") == 1
