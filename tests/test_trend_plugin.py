"""The trends plugin: windows close, forecasts go out as ``trend`` events, history outlives restarts;
the Prometheus gauges made from those events; and the daemon publishing them over MQTT."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import Mosquitto, Subscriber, free_port, mosquitto  # noqa: F401 -- the fixture
from netgptd.eve import event_seconds, timestamp
from netgptd.plugin_host import PluginError, PluginHost, SensorContext, hookimpl, load_plugin
from netgptd.trend import forecasters
from netgptd.trend.history import WindowHistory
from netgptd_plugins.prometheus import TREND_MAX_SERIES, PrometheusPlugin
from netgptd_plugins import trends as trends_module
from netgptd_plugins.trends import TrendsPlugin, resolve_forecaster
from test_daemon import MINING, Daemon

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

T0 = 1_700_000_040.0  # a multiple of 60 (and of 2): windows start here
APPS = ("HTTP", "TLS", "DNS", "QUIC")


def flow(at: float, app: str | None = "HTTP", size: int = 1000) -> dict[str, Any]:
    """A flow event ending at ``at`` (seconds) of ``size`` bytes each way, 3+2 packets."""
    end = timestamp(int(at * 1e9))
    return {"timestamp": end, "event_type": "flow", "flow": {"start": end, "end": end, "bytes_toserver": size,
            "bytes_toclient": size, "pkts_toserver": 3, "pkts_toclient": 2}, "netgpt": {"app": app}}  # fmt: skip


def traffic(windows: int, width: float = 60.0, start: float = T0) -> Iterator[dict[str, Any]]:
    """Flows of every app in ``windows`` windows from ``start``: window w has w % 3 + 1 flows of each
    app, app i's of (i + 1) kB each way."""
    for w in range(windows):
        for n in range(w % 3 + 1):
            for i, app in enumerate(APPS):
                yield flow(start + w * width + 1 + n + i / 10, app, 1000 * (i + 1))


def sensor(state: Path) -> SensorContext:
    return SensorContext(site="lab", sensor="s1", state_dir=state)


def rounds_done(plugin: TrendsPlugin, timeout: float = 10.0) -> None:
    """Wait until the executor has run the rounds given to it (as time passes between events in a live loop)."""
    concurrent.futures.wait(list(plugin._pending), timeout)


def feed(plugin: TrendsPlugin, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the plugin raises for ``events``, letting each executor round finish before the next event."""
    raised: list[dict[str, Any]] = []
    for event in events:
        raised += plugin.netgpt_event(event) or []
        rounds_done(plugin)
    return raised


def stats_at(at: float) -> dict[str, Any]:
    return {"event_type": "stats", "timestamp": timestamp(int(at * 1e9)), "stats": {}}


def started(state: Path, **settings: Any) -> TrendsPlugin:
    settings.setdefault("forecaster", "seasonal_naive")
    settings.setdefault("inline_ms", 1000.0)  # a cheap round runs inline (once measured)
    plugin = TrendsPlugin(**settings)
    plugin.netgpt_start(sensor(state))
    return plugin


def settle(plugin: TrendsPlugin, at: float) -> list[dict[str, Any]]:
    """The events of the executor's rounds, handed on by stats events at ``at`` (which may close windows too)."""
    return feed(plugin, [stats_at(at)]) + feed(plugin, [stats_at(at)])


def scrape(listen: str) -> Samples:
    """The samples of /metrics by (name, labels), over real HTTP."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def free_listen() -> str:
    return f"127.0.0.1:{free_port()}"


# -- the plugin ----------------------------------------------------------------------


def test_closed_windows_give_trend_events_with_h_forecasts(tmp_path: Path) -> None:
    plugin = started(tmp_path, horizon=4, top_apps=2, min_history=5)
    raised = feed(plugin, traffic(12)) + settle(plugin, T0 + 11 * 60 + 30)
    plugin.netgpt_close()
    # 11 windows closed (the 12th is open); forecasts from the 5th on: 7 rounds of total + 2 apps.
    status = plugin.netgpt_status()
    assert status["windows"] == 11 and status["forecasts"] == 21 == len(raised)
    assert status["forecast_errors"] == 0 and status["forecast_seconds_total"] > 0
    assert {e["trend"]["series"] for e in raised} == {"total", "QUIC", "DNS"}  # the two largest apps
    first = raised[0]
    assert first["event_type"] == "trend" and first["timestamp"] == timestamp(int((T0 + 5 * 60) * 1e9))
    trend = first["trend"]
    assert trend["metric"] == "bytes" and trend["window_s"] == 60 and trend["forecaster"] == "seasonal_naive"
    assert trend["window_start"] == timestamp(int((T0 + 4 * 60) * 1e9)) and trend["history"] == 5
    assert len(trend["forecast"]) == 4
    assert [event_seconds(p["timestamp"]) for p in trend["forecast"]] == [T0 + (5 + h) * 60 for h in range(4)]
    # Window w has (w % 3 + 1) flows per app, app i (i + 1) kB each way.
    by_window = {(e["trend"]["window_start"], e["trend"]["series"]): e["trend"] for e in raised}
    for w in range(4, 11):
        start = timestamp(int((T0 + w * 60) * 1e9))
        assert by_window[start, "total"]["actual"] == (w % 3 + 1) * 2000 * (1 + 2 + 3 + 4)
        assert by_window[start, "QUIC"]["actual"] == (w % 3 + 1) * 2000 * 4
    # Seasonal naive with the history too short for an hour's season repeats it: values seen before.
    last = by_window[timestamp(int((T0 + 10 * 60) * 1e9)), "total"]
    assert [p["value"] for p in last["forecast"]] == [last["actual"]] * 4
    assert len(json.dumps(first)) < 800, "a trend event stays small"


def test_no_forecast_before_min_history_and_other_metrics(tmp_path: Path) -> None:
    plugin = started(tmp_path, metric="flows", min_history=6, top_apps=0, horizon=2)
    assert feed(plugin, traffic(6)) == [] and plugin.netgpt_status()["windows"] == 5  # not yet
    raised = feed(plugin, traffic(1, start=T0 + 6 * 60)) + settle(plugin, T0 + 6 * 60 + 30)
    plugin.netgpt_close()
    assert [e["trend"]["series"] for e in raised] == ["total"]
    assert raised[0]["trend"]["metric"] == "flows" and raised[0]["trend"]["actual"] == 4 * (5 % 3 + 1)


def test_history_survives_a_restart_and_a_partial_window_is_merged(tmp_path: Path) -> None:
    events = list(traffic(8))
    half = len(events) // 2 + 1  # stops inside a window
    first = started(tmp_path, min_history=8, horizon=2)
    assert feed(first, events[:half]) == []
    first.netgpt_close()  # the open window is flushed to the history
    closed_before = first.netgpt_status()["windows"]

    second = started(tmp_path, min_history=8, horizon=2)
    raised = feed(second, events[half:]) + feed(second, traffic(1, start=T0 + 8 * 60)) + settle(second, T0 + 8 * 60)
    second.netgpt_close()
    assert closed_before < 7 and second.netgpt_status()["windows"] >= 8 - closed_before
    total = [e["trend"] for e in raised if e["trend"]["series"] == "total"]
    assert len(total) == 1 and total[0]["history"] == 8, "the forecast saw the windows from before the restart"
    assert total[0]["window_start"] == timestamp(int((T0 + 7 * 60) * 1e9))
    with WindowHistory(tmp_path) as history:
        stored = history.series("bytes", site="lab", sensor="s1")
    # Windows 0..7 (window 4 split by the restart, whole again), and window 8 flushed at the second close.
    assert [v for _, v in stored] == [(w % 3 + 1) * 20000 for w in range(8)] + [20000]


def test_unknown_forecaster_and_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"forecaster: unknown 'prophet' \(known: auto, .*holt_winters"):
        TrendsPlugin(forecaster="prophet")
    with pytest.raises(ValueError, match="metric: unknown 'bits'"):
        TrendsPlugin(metric="bits")
    with pytest.raises(ValueError, match="horizon: must be at least 1"):
        TrendsPlugin(horizon=0)
    with pytest.raises(PluginError, match=r"\[plugins.trends\] forecaster: unknown 'prophet'"):
        load_plugin("trends", {"forecaster": "prophet"})
    with pytest.raises(PluginError, match=r"\[plugins.trends\] window_s: expected float, got str"):
        load_plugin("trends", {"window_s": "60"})


def test_auto_takes_edge_llm_when_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "edge_llm", forecasters.SeasonalNaive)
    assert resolve_forecaster("auto") == "edge_llm"
    monkeypatch.delitem(forecasters.FORECASTERS, "edge_llm")
    assert resolve_forecaster("auto") in ("holt_winters", "seasonal_naive")


class SlowForecaster:
    """Last value, after ``delay`` seconds per predict; a series whose last value is in ``fail`` raises."""

    delay = 0.2
    fail: set[float] = set()
    threads: set[str] = set()  # where predict ran

    def __init__(self, season: int) -> None:
        self.season = season

    def fit(self, history: np.ndarray) -> None:
        pass

    def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
        time.sleep(self.delay)
        if history[-1] in self.fail:
            raise RuntimeError("no good")
        SlowForecaster.threads.add(threading.current_thread().name)
        return np.full(horizon, history[-1])


def test_a_slow_forecaster_runs_in_the_executor_and_its_events_come_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "slow", SlowForecaster)
    SlowForecaster.threads = set()
    plugin = started(tmp_path, forecaster="slow", inline_ms=50.0, min_history=3, top_apps=1, horizon=2)
    slowest = 0.0
    raised: list[dict[str, Any]] = []
    for event in traffic(6):
        began = time.perf_counter()
        raised += plugin.netgpt_event(event) or []
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.3, "a 0.4 s round must not run in the hook"
    raised += settle(plugin, T0 + 5 * 60 + 30)  # before window 5's end: closes nothing
    status = plugin.netgpt_status()
    plugin.netgpt_close()
    rounds = {e["trend"]["window_start"] for e in raised}
    assert status["rounds_async"] == len(rounds) == 3 and status["rounds_skipped"] == 0
    assert sorted(rounds) == [e["trend"]["window_start"] for e in raised][:: 2], "in window order, total then app"
    assert all(name.startswith("trends") for name in SlowForecaster.threads)
    assert status["forecast_seconds_total"] >= 0.4 * len(rounds)


def test_with_emit_the_executor_s_rounds_are_emitted_by_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "slow", SlowForecaster)
    monkeypatch.setattr(SlowForecaster, "delay", 0.05)
    emitted: list[tuple[str, dict[str, Any]]] = []
    plugin = TrendsPlugin(forecaster="slow", min_history=3, top_apps=1, horizon=2)

    async def main() -> list[dict[str, Any]]:
        loop_thread = threading.current_thread().name
        plugin.netgpt_start(dataclasses.replace(sensor(tmp_path),
                                                emit=lambda e: emitted.append((threading.current_thread().name, e))))
        try:
            returned = feed(plugin, traffic(6))  # no event after the last window closes
            for _ in range(200):
                if len(emitted) == 3 * 2:
                    break
                await asyncio.sleep(0.01)
            assert {thread for thread, _ in emitted} == {loop_thread}
            return returned
        finally:
            plugin.netgpt_close()

    assert asyncio.run(main()) == []
    starts = [e["trend"]["window_start"] for _, e in emitted]
    assert starts == sorted(starts) and len(set(starts)) == 3
    assert plugin.netgpt_status()["rounds_async"] == 3


def alert(at: float) -> dict[str, Any]:
    return {"timestamp": timestamp(int(at * 1e9)), "event_type": "alert", "alert": {"category": "scan"}}


def test_windows_an_alert_closes_are_emitted_after_it_in_order(tmp_path: Path) -> None:
    """An alert may be raised by a plugin (what answers it is not passed on): its rounds go through emit."""
    emitted: list[dict[str, Any]] = []
    plugin = TrendsPlugin(forecaster="seasonal_naive", min_history=2, top_apps=0, window_s=10.0)

    async def main() -> list[Any]:
        plugin.netgpt_start(dataclasses.replace(sensor(tmp_path), emit=emitted.append))
        try:
            returned = [plugin.netgpt_event(flow(T0 + 1)), plugin.netgpt_event(flow(T0 + 11))]
            returned.append(plugin.netgpt_event(alert(T0 + 21)))  # closes window 1: first round, executor
            while len(emitted) < 1:
                await asyncio.sleep(0.005)
            returned.append(plugin.netgpt_event(alert(T0 + 31)))  # window 2: inline, emitted after the alert
            returned.append(plugin.netgpt_event(flow(T0 + 41)))  # window 3: queued behind it, in the executor
            for _ in range(200):
                if len(emitted) == 3:
                    break
                await asyncio.sleep(0.005)
            return returned
        finally:
            plugin.netgpt_close()

    assert asyncio.run(main()) == [None] * 5
    assert [event_seconds(e["trend"]["window_start"]) for e in emitted] == [T0 + 10, T0 + 20, T0 + 30]
    assert [e["trend"]["actual"] for e in emitted] == [2000, 0, 0]  # alerts carry no bytes
    assert plugin.netgpt_status()["rounds_async"] == 2


def test_rounds_beyond_max_pending_are_skipped_and_the_windows_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "slow", SlowForecaster)
    monkeypatch.setattr(trends_module, "MAX_PENDING", 1)
    monkeypatch.setattr(SlowForecaster, "delay", 0.5)
    plugin = started(tmp_path, forecaster="slow", min_history=3, top_apps=0)
    for event in traffic(6):  # windows 2, 3 and 4 close at once while the first round sleeps
        plugin.netgpt_event(event)
    raised = settle(plugin, T0 + 5 * 60 + 30)
    status = plugin.netgpt_status()
    plugin.netgpt_close()
    assert status["windows"] == 5 and status["rounds_async"] + status["rounds_skipped"] == 3
    assert status["rounds_skipped"] >= 1 and len(raised) == status["rounds_async"]
    with WindowHistory(tmp_path) as history:
        assert len(history.windows("lab", "s1")) == 6  # and the open one, flushed at close


class BatchForecaster:
    """Like edge_llm: one instance, ``predict_many`` over every series with where-and-when contexts."""

    calls: list[tuple[int, list[Any]]] = []

    def __init__(self, season: int) -> None:
        self.season = season

    def fit(self, history: np.ndarray) -> None:
        pass

    def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
        raise AssertionError("predict_many is used")

    def predict_many(self, histories: list[np.ndarray], horizon: int, contexts: list[Any] | None = None) -> list:
        BatchForecaster.calls.append((len(histories), list(contexts or [])))
        return [np.full(horizon, h[-1] * 2) for h in histories]


def test_a_batched_forecaster_gets_every_series_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "batch", BatchForecaster)
    BatchForecaster.calls = []
    plugin = started(tmp_path, forecaster="batch", min_history=3, top_apps=2, horizon=2)
    raised = feed(plugin, traffic(5)) + settle(plugin, T0 + 4 * 60 + 30)
    plugin.netgpt_close()
    assert [n for n, _ in BatchForecaster.calls] == [3, 3]  # windows 2 and 3: total, QUIC, DNS
    context = BatchForecaster.calls[-1][1][0]
    assert context.site == "lab" and context.when.timestamp() == T0 + 4 * 60 and context.when.utcoffset().seconds == 0
    assert all(e["trend"]["forecast"][0]["value"] == 2 * e["trend"]["actual"] for e in raised) and len(raised) == 6


def test_auto_moves_on_when_edge_llm_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(season: int) -> Any:
        raise OSError("no model in default_llm")

    monkeypatch.setitem(forecasters.FORECASTERS, "edge_llm", missing)
    monkeypatch.setattr(trends_module, "_usable", lambda name: name in ("edge_llm", "seasonal_naive"))
    plugin = started(tmp_path, forecaster="auto", min_history=3, top_apps=0)
    assert plugin.forecaster == "edge_llm"
    raised = feed(plugin, traffic(5)) + settle(plugin, T0 + 4 * 60 + 30)
    plugin.netgpt_close()
    assert len(raised) == 2 and {e["trend"]["forecaster"] for e in raised} == {"seasonal_naive"}
    assert plugin.netgpt_status()["forecaster"] == "seasonal_naive"
    assert plugin.netgpt_status()["forecast_errors"] == 0
    # Named explicitly, a forecaster that cannot be made is an error per series, not a silent switch.
    explicit = started(tmp_path / "explicit", forecaster="edge_llm", min_history=3, top_apps=0)
    assert feed(explicit, traffic(4)) + settle(explicit, T0 + 3 * 60 + 30) == []
    explicit.netgpt_close()
    assert explicit.netgpt_status()["forecast_errors"] == 1


def test_a_failing_series_is_counted_and_the_others_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(forecasters.FORECASTERS, "slow", SlowForecaster)
    monkeypatch.setattr(SlowForecaster, "delay", 0.0)
    monkeypatch.setattr(SlowForecaster, "fail", {8000.0})  # QUIC in a window of one flow per app
    plugin = started(tmp_path, forecaster="slow", min_history=2, top_apps=1)
    raised = feed(plugin, traffic(5)) + settle(plugin, T0 + 4 * 60 + 30)
    plugin.netgpt_close()
    status = plugin.netgpt_status()
    # Windows 1..3 forecast (3 rounds of total and QUIC); QUIC fails in window 3 (w % 3 == 0: one flow).
    assert status["forecast_errors"] == 1 and status["forecasts"] == 5 == len(raised)
    assert [(e["trend"]["series"], e["trend"]["actual"]) for e in raised[-1:]] == [("total", 20000)]


def test_stats_close_quiet_windows_only_near_the_event_clock(tmp_path: Path) -> None:
    plugin = started(tmp_path, min_history=2, window_s=10.0, top_apps=0)
    feed(plugin, [flow(T0 + 1), flow(T0 + 11), flow(T0 + 21)])
    assert plugin.netgpt_status()["windows"] == 2
    # A replayed capture's stats carry today's wall clock: far ahead, ignored.
    feed(plugin, [{"event_type": "stats", "timestamp": timestamp(time.time_ns()), "stats": {}}])
    assert plugin.netgpt_status()["windows"] == 2
    # A live sensor's stats, 45 s after the last flow: the open window and three quiet ones close.
    raised = settle(plugin, T0 + 66)
    plugin.netgpt_close()
    assert plugin.netgpt_status()["windows"] == 6
    assert [e["trend"]["actual"] for e in raised][-3:] == [0, 0, 0]


# -- Prometheus gauges -----------------------------------------------------------------


def trend_event(series: str, start: float, actual: float, forecast: list[float], metric: str = "bytes") -> dict:
    return {"timestamp": timestamp(int((start + 60) * 1e9)), "event_type": "trend",
            "trend": {"series": series, "metric": metric, "window_s": 60, "window_start": timestamp(int(start * 1e9)),
                      "actual": actual, "forecaster": "seasonal_naive", "history": 12,
                      "forecast": [{"timestamp": timestamp(int((start + 60 * (h + 1)) * 1e9)), "value": v}
                                   for h, v in enumerate(forecast)]}}  # fmt: skip


def test_prometheus_exports_trend_gauges_of_the_latest_round() -> None:
    listen = free_listen()
    plugin = PrometheusPlugin(listen=listen)

    async def main() -> list[dict]:
        plugin.netgpt_start(SensorContext())
        try:
            scrapes = [scrape(listen)]
            for event in (trend_event("total", T0, 900, [1000, 1100.5, 1200]), trend_event("HTTP", T0, 400, [1, 2, 3]),
                          trend_event("DNS", T0, 500, [5, 5, 5])):  # fmt: skip
                plugin.netgpt_event(event)
            scrapes.append(scrape(listen))
            # The next window: DNS left the top apps; within the round HTTP still shows its last values.
            plugin.netgpt_event(trend_event("total", T0 + 60, 1000, [1, 1, 1]))
            scrapes.append(scrape(listen))
            plugin.netgpt_event(trend_event("HTTP", T0 + 60, 450, [2, 2, 2]))
            plugin.netgpt_event(trend_event("total", T0 + 120, 7, [7, 7, 7]))  # DNS, last seen two rounds ago, goes
            scrapes.append(scrape(listen))
            return scrapes
        finally:
            plugin.netgpt_close()

    empty, first, rolling, later = asyncio.run(main())
    assert not any(name.startswith("netgpt_trend") for name, _ in empty)
    assert value(first, "netgpt_trend_actual", series="total", metric="bytes") == 900
    assert [value(first, "netgpt_trend_forecast", series="total", metric="bytes", horizon=str(h)) for h in (1, 2, 3)] \
        == [1000, 1100.5, 1200]  # fmt: skip
    assert value(first, "netgpt_trend_forecast", series="DNS", metric="bytes", horizon="3") == 5
    assert value(rolling, "netgpt_trend_actual", series="total", metric="bytes") == 1000
    assert value(rolling, "netgpt_trend_actual", series="HTTP", metric="bytes") == 400
    assert value(later, "netgpt_trend_actual", series="HTTP", metric="bytes") == 450
    assert value(later, "netgpt_trend_actual", series="DNS", metric="bytes") is None
    assert {dict(labels)["series"] for name, labels in later if name.startswith("netgpt_trend")} == {"total", "HTTP"}
    labels = {k for name, ls in first if name.startswith("netgpt_trend") for k, _ in ls}
    assert labels == {"series", "metric", "horizon"}


def test_prometheus_trend_series_are_bounded() -> None:
    plugin = PrometheusPlugin(listen=free_listen())
    for i in range(TREND_MAX_SERIES + 10):
        plugin.netgpt_event(trend_event(f"app{i}", T0, i, [i]))
    plugin.netgpt_event(trend_event("x", T0, 1, [1], metric="bits"))  # not a metric the trends plugin makes
    assert len(plugin._trends.values) == TREND_MAX_SERIES
    assert all(metric == "bytes" for _, metric in plugin._trends.values)


def test_trends_and_prometheus_through_the_plugin_host(tmp_path: Path) -> None:
    listen = free_listen()
    host = PluginHost({})
    trends = TrendsPlugin(window_s=60.0, horizon=3, top_apps=2, min_history=4, forecaster="seasonal_naive")
    host.add(trends, "trends")
    host.add(PrometheusPlugin(listen=listen), "prometheus")
    seen: list[dict[str, Any]] = []

    class Sink:
        @hookimpl
        def netgpt_event(self, event: dict[str, Any]) -> None:
            if event["event_type"] == "trend":
                seen.append(event)

    host.add(Sink(), "sink")

    async def main() -> Samples:
        # As the service does: plugins get the host's emit for what they make later.
        await host.start(dataclasses.replace(sensor(tmp_path), emit=host.emit))
        try:
            for event in traffic(9):
                host.emit(event)
                while trends.netgpt_status()["rounds_pending"]:  # the first round (cost unmeasured) runs in
                    await asyncio.sleep(0.005)  # the executor, and the loop emits its events
            return scrape(listen)
        finally:
            await host.aclose()

    samples = asyncio.run(main())
    assert host.errors == {}
    assert len(seen) == 5 * 3  # windows 3..7, total + 2 apps
    last = {e["trend"]["series"]: e["trend"] for e in seen[-3:]}
    for series, trend in last.items():
        assert value(samples, "netgpt_trend_actual", series=series, metric="bytes") == trend["actual"]
        for h, point in enumerate(trend["forecast"], 1):
            forecast = value(samples, "netgpt_trend_forecast", series=series, metric="bytes", horizon=str(h))
            assert forecast == point["value"]
    assert host.status()["trends"]["forecasts"] == 15


# -- the daemon, end to end ----------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.slow
def test_daemon_publishes_trends_over_mqtt(corpus: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text('[plugins.trends]\nwindow_s = 2.0\nhorizon = 3\nmin_history = 3\ntop_apps = 2\n'
                      'forecaster = "holt_winters"\n')  # fmt: skip
    metrics = f"127.0.0.1:{free_port()}"
    topic = "netgpt/lab/s1/trends"
    with Subscriber(mosquitto, topic) as watcher:
        daemon = Daemon(tmp_path, "--config", str(config), "--source", f"pcap:{corpus / MINING}", "--replay-speed", "2",
                        "--mqtt", mosquitto.url, "--metrics", metrics, "--site", "lab", "--sensor", "s1")  # fmt: skip
        try:
            daemon.wait_for_log("started")
            watcher.wait_for(lambda m: len(m) >= 1, timeout=30)
            samples = scrape(metrics)
            assert value(samples, "netgpt_trend_forecast", series="total", metric="bytes", horizon="3") is not None
            assert daemon.wait() == 0  # the capture ends
        finally:
            daemon.kill()
        time.sleep(0.5)  # QoS 0: the last ones may still be on their way
        received = [json.loads(p) for p in watcher.payloads(topic)]
    eve = daemon.events("trend")
    stats = daemon.events("stats")[-1]["netgpt"]["stats"]["plugins"]["trends"]
    # 18 s of capture in 2 s windows, forecasts from the third on. (The last stats event may come
    # before the events of a round it handed on.)
    assert stats["windows"] >= 7 and len(eve) >= stats["forecasts"] >= 6 and stats["forecast_errors"] == 0
    assert received and all(event in eve for event in received)
    assert {e["trend"]["series"] for e in eve} >= {"total"}
    assert all(len(e["trend"]["forecast"]) == 3 and e["trend"]["window_s"] == 2 for e in eve)
    starts = [event_seconds(e["trend"]["window_start"]) for e in eve if e["trend"]["series"] == "total"]
    assert starts == sorted(starts) and all(b - a == 2 for a, b in zip(starts, starts[1:]))
    assert (tmp_path / "state" / "trend-history.sqlite3").is_file()
    assert not any(e.get("level") == "error" for e in daemon.entries())
