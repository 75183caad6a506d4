"""Prometheus exporter: the sensor's counters, flow verdicts and inference timings on ``/metrics``.

Two sources feed it:

* The periodic ``stats`` event carries totals the pipeline keeps. The plugin
  keeps a private copy of the latest one (its reference replaced in one
  assignment, in the loop thread) and a custom collector turns it into
  metric families at scrape time, in the HTTP server's thread, which only
  reads it. A scrape thus sees one snapshot whole, and the values are
  exactly what the pipeline counted, with no delta arithmetic to drift.
  A key the snapshot lacks (no MQTT plugin, replay) gives no series.
* Flow and alert events and ``netgpt_batch`` calls are counted as they pass,
  in prometheus_client's own counters and histograms (which lock).
* ``trend`` events (from the trends plugin) set ``netgpt_trend_actual`` and
  ``netgpt_trend_forecast`` (one sample per step ahead, ``horizon`` "1".."H"),
  again from a private mapping replaced whole, read by a collector.

Cardinality: no label holds an address, a port or a flow id. ``app`` and
``attack`` are the class names of the loaded model (bounded by its label
set) or ``unclassified``; alert ``category`` and ``source`` (the alert's
``netgpt.detector``) are the model's attack classes and ``model`` or the
configured rule names; the labels taken from the stats event (reasons,
kinds, queues, plugins, read from its ``netgpt.stats``; the ask plugin's
refusal, drop and malformed reasons) are fixed by the daemon's code and
configuration: no requester name or address is a label. The trend gauges' ``series`` is ``total`` or an
application (the model's classes, or ``unclassified``), ``metric`` one of
bytes, flows or packets, ``horizon`` the steps of the trends plugin: only
the series of the latest complete forecast round are kept (and at most
``TREND_MAX_SERIES``), so an application that left the top ones goes away.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import threading
from typing import Any, Iterator, Mapping, NamedTuple
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netgptd import __version__
from netgptd.eve import alert_detector, stats_of
from netgptd.plugin_host import SensorContext, hookimpl
from netgptd.trend.windows import TRAFFIC_METRICS

log = structlog.get_logger(__name__)

UNCLASSIFIED = "unclassified"
CONFIDENCE_BUCKETS = tuple(i / 10 for i in range(1, 11))
INFERENCE_SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
TREND_MAX_SERIES = 64  # (series, metric) pairs kept at most, whatever the trend events say
TREND_MAX_HORIZON = 100  # forecast steps exported per series at most


class _Stat(NamedTuple):
    """One metric read from the stats snapshot: the value at ``path``, or with
    ``label``, the ``{label value: number}`` mapping there."""

    path: tuple[str, ...]
    name: str
    help: str
    counter: bool = True
    label: str | None = None


STATS_METRICS = (
    _Stat(("uptime",), "netgpt_uptime_seconds", "Seconds since the pipeline started.", counter=False),
    _Stat(("packets",), "netgpt_packets_total", "Packets captured."),
    _Stat(("bytes",), "netgpt_bytes_total", "Bytes captured (on-wire length)."),
    _Stat(("capture_drops",), "netgpt_capture_drops_total", "Packets the capture dropped, by where.", label="where"),
    _Stat(("decode_errors",), "netgpt_decode_errors_total", "Packets that did not decode, by reason.", label="reason"),
    _Stat(("skipped",), "netgpt_skipped_packets_total", "Packets skipped (not IP), by kind.", label="kind"),
    _Stat(("hotpath_fallback",), "netgpt_hotpath_fallback", "1 while packets are parsed, decoded and tracked in Python "
          "because the compiled hot path was not built.", counter=False),  # fmt: skip
    _Stat(("flows",), "netgpt_flows_total", "Flows created."),
    _Stat(("active_flows",), "netgpt_flows_active", "Flows in the flow table.", counter=False),
    _Stat(("evictions",), "netgpt_flow_evictions_total", "Flows ended, by reason.", label="reason"),
    _Stat(("emergency_entered",), "netgpt_flow_emergency_total", "Times the flow table entered emergency mode."),
    _Stat(("fragments_unmatched",), "netgpt_fragments_unmatched_total", "IP fragments that matched no flow."),
    _Stat(("classified",), "netgpt_flows_classified_total", "Flows the model classified."),
    _Stat(("unclassified",), "netgpt_flows_unclassified_total", "Flows left unclassified, by reason.", label="reason"),
    _Stat(("queues",), "netgpt_queue_depth", "Items waiting in each pipeline queue.", counter=False, label="queue"),
    _Stat(("queue_limits",), "netgpt_queue_capacity", "Capacity of each pipeline queue.", counter=False, label="queue"),
    _Stat(("watchdog", "pings"), "netgpt_watchdog_pings_total", "Watchdog pings sent."),
    _Stat(("watchdog", "stalls"), "netgpt_watchdog_stalls_total", "Pipeline stalls the watchdog saw."),
    _Stat(("flood_log", "summarised"), "netgpt_flows_summarised_total",
          "Flows of a flood past its budget, counted into a flood summary instead of written."),  # fmt: skip
    _Stat(("flood_log", "summaries"), "netgpt_flood_summaries_total", "Flood summary events written."),
    _Stat(("flood_log", "floods"), "netgpt_floods_followed", "Floods whose flows the flood log bounds now.",
          counter=False),  # fmt: skip
    _Stat(("plugin_errors",), "netgpt_plugin_errors_total", "Plugin hook failures, by plugin.", label="plugin"),
    _Stat(("plugins", "mqtt", "connected"), "netgpt_mqtt_connected", "1 while connected to the broker.", counter=False),
    _Stat(("plugins", "mqtt", "outbox_depth"), "netgpt_mqtt_outbox_depth", "Events waiting to be published.",
          counter=False),  # fmt: skip
    _Stat(("plugins", "mqtt", "outbox_dropped"), "netgpt_mqtt_outbox_dropped_total", "Events dropped, outbox full."),
    _Stat(("plugins", "mqtt", "published"), "netgpt_mqtt_published_total", "Events published."),
    _Stat(("plugins", "mqtt", "reconnects"), "netgpt_mqtt_reconnects_total", "Reconnections to the broker."),
    _Stat(("plugins", "rollout", "applied"), "netgpt_rollout_applied_total", "Announced model bundles served."),
    _Stat(("plugins", "rollout", "refused"), "netgpt_rollout_refused_total",
          "Announced model bundles refused (the running model stays), by reason.", label="reason"),
    _Stat(("plugins", "ask", "connected"), "netgpt_ask_connected", "1 while the ask plugin is connected to the broker.",
          counter=False),  # fmt: skip
    _Stat(("plugins", "ask", "received"), "netgpt_ask_received_total", "Messages read on the ask topic."),
    _Stat(("plugins", "ask", "accepted"), "netgpt_ask_accepted_total",
          "Ask requests admitted (authorised, within their rate); each gets one answer."),  # fmt: skip
    _Stat(("plugins", "ask", "rate_limited"), "netgpt_ask_rate_limited_total",
          "Ask requests over their requester's rate, dropped unanswered."),  # fmt: skip
    _Stat(("plugins", "ask", "refused"), "netgpt_ask_refused_total", "Ask requests refused, by reason.", label="reason"),
    _Stat(("plugins", "ask", "dropped"), "netgpt_ask_dropped_total", "Ask requests dropped unanswered, by reason.",
          label="reason"),  # fmt: skip
    _Stat(("plugins", "ask", "malformed"), "netgpt_ask_malformed_total",
          "Ask messages that were not requests (counted, dropped), by reason.", label="reason"),  # fmt: skip
    _Stat(("plugins", "rules", "tracked"), "netgpt_rules_windows", "Windows the rule detectors keep, by rule.",
          counter=False, label="rule"),  # fmt: skip
    _Stat(("plugins", "rules", "evicted"), "netgpt_rules_evicted_total", "Rule windows dropped for room, by rule.",
          label="rule"),  # fmt: skip
    _Stat(("plugins", "rules", "sketched"), "netgpt_rules_sketched_total", "Values rule windows counted in a "
          "sketch past their exact cap, by rule.", label="rule"),  # fmt: skip
    _Stat(("plugins", "rules", "cooldowns"), "netgpt_rules_cooldowns", "Offenders the rules keep quiet now.",
          counter=False),  # fmt: skip
    _Stat(("plugins", "rules", "cooldowns_evicted"), "netgpt_rules_cooldowns_evicted_total",
          "Cool-downs forgotten for room before they ended."),  # fmt: skip
)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError naming ``listen`` otherwise."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        host_ok = _is_ipv6(host)
    else:
        host_ok = bool(_HOSTNAME.fullmatch(host))
    if not host_ok or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:9400 or [::1]:9400")
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _at(stats: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = stats
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


class _SnapshotCollector:
    """Metric families from the latest stats snapshot and the sensor's identity, built per scrape."""

    def __init__(self) -> None:
        self.stats: Mapping[str, Any] = {}
        self.sensor: SensorContext | None = None

    def collect(self) -> Iterator[Metric]:
        stats, sensor = self.stats, self.sensor  # one read each: the scrape sees one snapshot
        if sensor is not None:
            build = GaugeMetricFamily("netgpt_build_info", "The daemon's version (value 1).", labels=["version"])
            build.add_metric([sensor.version or __version__], 1)
            yield build
            # The stats event names the model serving now (it changes on reload); before one, the start's.
            loaded = stats["model"] if "model" in stats else sensor.model
            if loaded:
                keys = ["name", "version", "provider"]
                model = GaugeMetricFamily("netgpt_model_info", "The loaded model (value 1).", labels=keys)
                model.add_metric([str(loaded.get(k, "")) for k in keys], 1)
                yield model
        for stat in STATS_METRICS:
            value = _at(stats, stat.path)
            family_type = CounterMetricFamily if stat.counter else GaugeMetricFamily
            if stat.label is None and _is_number(value):
                yield family_type(stat.name, stat.help, value=value)
            elif stat.label is not None and isinstance(value, Mapping):
                family = family_type(stat.name, stat.help, labels=[stat.label])
                for key, number in sorted(value.items()):
                    if _is_number(number):
                        family.add_metric([str(key)], number)
                yield family


class _TrendCollector:
    """``netgpt_trend_actual`` and ``netgpt_trend_forecast`` from the latest trend events.

    ``update`` runs in the loop thread and replaces ``values`` whole; a scrape
    (``collect``, in the server's thread) reads it once. A trend event of a
    new window starts a round: what the previous round did not update goes.
    """

    def __init__(self) -> None:
        # (series, metric) -> (actual, forecast values by step)
        self.values: Mapping[tuple[str, str], tuple[float, tuple[float, ...]]] = {}
        self._round_start: str | None = None
        self._round: set[tuple[str, str]] = set()
        self._overflow_logged = False

    def update(self, trend: Mapping[str, Any]) -> None:
        series, metric, start = trend.get("series"), trend.get("metric"), trend.get("window_start")
        forecast = trend.get("forecast")
        if not (isinstance(series, str) and metric in TRAFFIC_METRICS and _is_number(trend.get("actual"))
                and isinstance(forecast, list)):  # fmt: skip
            return
        steps = tuple(float(p["value"]) for p in forecast[:TREND_MAX_HORIZON]
                      if isinstance(p, Mapping) and _is_number(p.get("value")))  # fmt: skip
        values = dict(self.values)
        if start != self._round_start:
            values = {key: v for key, v in values.items() if key in self._round}
            self._round_start, self._round = start, set()
        key = (series, str(metric))
        if key not in values and len(values) >= TREND_MAX_SERIES:
            if not self._overflow_logged:
                log.warning("metrics_trend_series_limit", limit=TREND_MAX_SERIES, series=series)
                self._overflow_logged = True
            return
        values[key] = (float(trend["actual"]), steps)
        self._round.add(key)
        self.values = values

    def collect(self) -> Iterator[Metric]:
        values = self.values  # one read: the scrape sees one state
        if not values:
            return
        actual = GaugeMetricFamily("netgpt_trend_actual", "The metric in the trend window just closed.",
                                   labels=["series", "metric"])  # fmt: skip
        forecast = GaugeMetricFamily("netgpt_trend_forecast", "The metric forecast for the window HORIZON steps "
                                     "after the one just closed (1 is the next).",
                                     labels=["series", "metric", "horizon"])  # fmt: skip
        for (series, metric), (value, steps) in sorted(values.items()):
            actual.add_metric([series, metric], value)
            for step, predicted in enumerate(steps, 1):
                forecast.add_metric([series, metric, str(step)], predicted)
        yield actual
        yield forecast


class PrometheusPlugin:
    """Serves ``/metrics`` on ``listen`` from its own registry (not the process-global one)."""

    def __init__(self, listen: str = "127.0.0.1:9400") -> None:
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry()
        self._snapshot = _SnapshotCollector()
        self.registry.register(self._snapshot)
        self._trends = _TrendCollector()
        self.registry.register(self._trends)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        r = self.registry
        self.flows_ended = Counter("netgpt_flows_ended_total", "Ended flows by verdict.", ["app", "attack"], registry=r)
        self.flow_bytes = Counter("netgpt_flow_bytes_total", "Bytes of ended flows, by app.", ["app"], registry=r)
        self.flow_packets = Counter("netgpt_flow_packets_total", "Packets of ended flows, by app.", ["app"], registry=r)
        self.app_confidence = Histogram("netgpt_app_confidence", "The model's app confidence per classified flow.",
                                        buckets=CONFIDENCE_BUCKETS, registry=r)  # fmt: skip
        self.attack_confidence = Histogram("netgpt_attack_confidence", "The model's attack confidence per classified "
                                           "flow.", buckets=CONFIDENCE_BUCKETS, registry=r)  # fmt: skip
        self.alerts = Counter("netgpt_alerts_total", "Alerts raised.", ["category", "severity", "source"], registry=r)
        self.inference_seconds = Histogram("netgpt_inference_duration_seconds", "Wall time of one model inference.",
                                           buckets=INFERENCE_SECONDS_BUCKETS, registry=r)  # fmt: skip
        self.batch_size = Histogram("netgpt_inference_batch_size", "Flows per model inference.",
                                    buckets=BATCH_SIZE_BUCKETS, registry=r)  # fmt: skip

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        """Bind the HTTP server; an address that cannot be bound is logged, and the daemon runs on without metrics."""
        self._snapshot.sensor = sensor
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            log.error("metrics_listen_failed", listen=self.listen, error=exc.strerror or str(exc))
            return
        log.info("metrics_listening", listen=self.listen)

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if kind == "stats" and (stats := stats_of(event)) is not None:
            # A private copy: the pipeline may go on changing the dict it emitted.
            self._snapshot.stats = copy.deepcopy(stats)
        elif kind == "flow":
            self._flow(event)
        elif kind == "alert":
            alert = event.get("alert") or {}
            self.alerts.labels(str(alert.get("category", "")), str(alert.get("severity", "")), alert_detector(event)).inc()
        elif kind == "trend" and isinstance(event.get("trend"), Mapping):
            self._trends.update(event["trend"])

    def _flow(self, event: Mapping[str, Any]) -> None:
        verdict = event.get("netgpt") or {}
        counts = event.get("flow") or {}
        app = str(verdict.get("app") or UNCLASSIFIED)
        self.flows_ended.labels(app, str(verdict.get("attack") or UNCLASSIFIED)).inc()
        self.flow_bytes.labels(app).inc(counts.get("bytes_toserver", 0) + counts.get("bytes_toclient", 0))
        self.flow_packets.labels(app).inc(counts.get("pkts_toserver", 0) + counts.get("pkts_toclient", 0))
        for key, histogram in (("app_confidence", self.app_confidence), ("attack_confidence", self.attack_confidence)):
            if _is_number(verdict.get(key)):
                histogram.observe(verdict[key])

    @hookimpl
    def netgpt_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)

    @hookimpl
    def netgpt_health(self) -> str | None:
        """Dead once its HTTP server thread has ended while the plugin still runs (scrapes would fail)."""
        if self._thread is not None and not self._thread.is_alive():
            return "the metrics HTTP server stopped"
        return None

    @hookimpl
    def netgpt_close(self) -> None:
        """Stop serving (blocks up to the server's 0.5 s poll interval) and free the port."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None
