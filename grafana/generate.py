"""Write netgptd's Grafana dashboards (``grafana/dashboards/*.json``) from the panel lists below.

The JSON files are what Grafana provisions; this script is where they are
edited: change a panel here, run ``python grafana/generate.py``, and commit
both (``tests/test_grafana.py`` fails while the two differ).

Every panel and query uses the ``$datasource`` variable (type datasource,
any Prometheus), whose default is the provisioned datasource's fixed uid:
the dashboards work as they are on a Grafana that loads
``grafana/provisioning``, and imported on another one they offer its own
Prometheus datasources (Grafana falls back to the default one). Queries are scoped to the ``$site``, ``$sensor``
and ``$instance`` variables and aggregate across the sensors picked. ``site`` and ``sensor`` are target labels
the Prometheus scrape (or, in a fleet, the site Prometheus's ``external_labels`` seen through federation) puts
on every series: ``deploy/prometheus/``. Per-sensor series are grouped ``by (site, sensor, instance)``: in a
fleet, ``instance`` alone repeats (every site's sensor may be ``127.0.0.1:9400``).

The fleet dashboard also reads ``up{job="netgptd"}``, which Prometheus writes for each scrape of a sensor:
the scrape job must be named ``netgptd``.

Counters that carry a label only exist once something happened (a decode
error, a drop, an eviction). Where a zero is the true reading of "never
happened", the query falls back to one series of value 0 (its label set to
``none``) so the panel shows a flat line instead of "No data"; the fallback
is used only where the left side is empty (``or on()``).

Panels about the edge LLM's trend forecasts read metrics that exist only
with the ``trends`` plugin on; their description starts with ``edge-llm``.

Metrics never carry addresses, ports or flow ids, and no query may group by
one (the test checks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
PROVISIONED = {"type": "prometheus", "uid": "netgptd-prometheus"}  # grafana/provisioning/datasources/netgptd.yaml
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}  # what every panel, query and variable uses
EDGE_LLM = "edge-llm"  # description prefix of panels whose metrics come from the trends plugin
SCHEMA_VERSION = 39
SCOPE = 'site=~"$site", sensor=~"$sensor", instance=~"$instance"'
SEL = "{" + SCOPE + "}"  # the selector every query starts from
UP = '{job="netgptd", ' + SCOPE + "}"  # Prometheus's own up series for the sensors' scrapes
PER_SENSOR = "site, sensor, instance"  # what tells two sensors apart
SENSOR_LEGEND = "{{site}}/{{sensor}}"
RATE = "$__rate_interval"


def rate(metric: str, by: str = "", window: str = "$__rate_interval") -> str:
    """``sum [by (LABELS)] (rate(METRIC{scope}[window]))``."""
    group = f" by ({by}) " if by else ""
    return f"sum{group}(rate({metric}{SEL}[{window}]))"


def increase(metric: str, by: str = "", window: str = "$__range") -> str:
    group = f" by ({by}) " if by else ""
    return f"sum{group}(increase({metric}{SEL}[{window}]))"


def or_zero(expr: str, label: str | None = None) -> str:
    """``EXPR``, or a single 0 (with ``label="none"``) at the times EXPR has no series.

    Only for counters whose absence means "nothing happened yet".
    """
    zero = f'label_replace(vector(0), "{label}", "none", "", "")' if label else "vector(0)"
    return f"{expr} or on() {zero}"


def quantile(q: float, metric: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{SEL}[$__rate_interval])))"


def mean(metric: str) -> str:
    return f"sum(rate({metric}_sum{SEL}[$__rate_interval])) / sum(rate({metric}_count{SEL}[$__rate_interval]))"


# -- panels ---------------------------------------------------------------------------------------------------------


def target(expr: str, legend: str = "__auto", *, instant: bool = False, fmt: str = "time_series") -> dict[str, Any]:
    """A Prometheus query, opened in Grafana's code editor (the builder cannot show ``or on()``)."""
    return {"expr": expr, "legendFormat": legend, "instant": instant, "range": not instant, "format": fmt,
            "editorMode": "code"}


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *, w: int = 12, h: int = 8,
          unit: str | None = None, options: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
          custom: dict[str, Any] | None = None, overrides: list[dict[str, Any]] | None = None,
          transformations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A panel on the provisioned datasource; its targets get refIds A, B, ... in order."""
    field_defaults: dict[str, Any] = {}
    if unit:
        field_defaults["unit"] = unit
    if custom:
        field_defaults["custom"] = custom
    field_defaults.update(defaults or {})
    result: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": h, "w": w},
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": [dict(t, datasource=dict(DATASOURCE), refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
    }
    if transformations:
        result["transformations"] = transformations
    return result


TIMESERIES_OPTIONS = {
    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    "tooltip": {"mode": "multi", "sort": "desc"},
}


def timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str, *, stack: bool = False,
               **kw: Any) -> dict[str, Any]:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 25 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    return panel("timeseries", title, description, targets, unit=unit, custom=custom, options=TIMESERIES_OPTIONS, **kw)


def stat(title: str, description: str, targets: list[dict[str, Any]], unit: str, *, w: int = 4, h: int = 4,
         **kw: Any) -> dict[str, Any]:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "textMode": "auto",
        "orientation": "auto",
    }
    return panel("stat", title, description, targets, w=w, h=h, unit=unit, options=options, **kw)


def table(title: str, description: str, expr: str, columns: dict[str, str], *, value: str | None = None,
          w: int = 12, h: int = 8) -> dict[str, Any]:
    """An instant table of EXPR's labels.

    ``columns`` maps label -> header, in their order; ``value`` names the value column (hidden when None).
    """
    exclude = {"Time": True}
    rename = dict(columns)
    if value:
        rename["Value"] = value
    else:
        exclude["Value"] = True
    order = {name: i for i, name in enumerate([*columns, "Value"])}
    organize = {"excludeByName": exclude, "renameByName": rename, "indexByName": order, "includeByName": {}}
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return panel("table", title, description, [target(expr, instant=True, fmt="table")], w=w, h=h, options=options,
                 transformations=[{"id": "organize", "options": organize}])


def bargauge(title: str, description: str, targets: list[dict[str, Any]], unit: str, *, w: int = 12, h: int = 8,
             **kw: Any) -> dict[str, Any]:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 10,
        "minVizWidth": 0,
        "maxVizHeight": 300,
    }
    return panel("bargauge", title, description, targets, w=w, h=h, unit=unit, options=options, **kw)


def heatmap(title: str, description: str, expr: str, *, w: int = 12, h: int = 8) -> dict[str, Any]:
    """Buckets of a Prometheus histogram over time (Grafana de-accumulates them: format heatmap)."""
    options = {
        "calculate": False,
        "cellGap": 1,
        "yAxis": {"axisPlacement": "left", "reverse": False},
        "rowsFrame": {"layout": "le"},
        "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "fill": "dark-orange", "steps": 64,
                  "reverse": False},
        "cellValues": {"unit": "short"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "showValue": "auto",
        "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
    }
    return panel("heatmap", title, description, [target(expr, "{{le}}", fmt="heatmap")], w=w, h=h, options=options)


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "datasource": dict(DATASOURCE),
            "gridPos": {"h": 1, "w": 24}, "panels": []}


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}}


DASHED = [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
          {"id": "custom.fillOpacity", "value": 0}]
RED_FROM_ONE = thresholds(("green", None), ("red", 1))


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number the panels and place them left to right, wrapping at 24 columns; a row starts a new line."""
    x = y = line_h = 0
    for i, p in enumerate(panels, 1):
        p["id"] = i
        pos = p["gridPos"]
        if p["type"] == "row" or x + pos["w"] > 24:
            x, y, line_h = 0, y + line_h, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        line_h = max(line_h, pos["h"])
        if p["type"] == "row":
            x, y, line_h = 0, y + pos["h"], 0
    return panels


def label_variable(name: str, label: str, values: str) -> dict[str, Any]:
    """A multi-value query variable over ``label_values(...)``, "All" matching any value (and no label)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "definition": values,
        "query": {"query": values, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
        "skipUrlSync": False,
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    datasource = {
        "name": "datasource",
        "label": "Datasource",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "netgptd Prometheus", "value": PROVISIONED["uid"]},
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }
    # Chained: the sensors of the sites picked, the endpoints of the sensors picked.
    site = label_variable("site", "Site", "label_values(netgpt_build_info, site)")
    sensor = label_variable("sensor", "Sensor", 'label_values(netgpt_build_info{site=~"$site"}, sensor)')
    instance = label_variable("instance", "Endpoint",
                              'label_values(netgpt_build_info{site=~"$site", sensor=~"$sensor"}, instance)')
    annotation = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                  "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                  "type": "dashboard"}  # fmt: skip
    link = {"title": "netgptd", "type": "dashboards", "tags": ["netgptd"], "asDropdown": False,
            "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False, "tooltip": "",
            "url": ""}  # fmt: skip
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["netgptd"],
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "weekStart": "",
        "annotations": {"list": [annotation]},
        "links": [link],
        "templating": {"list": [datasource, site, sensor, instance]},
        "panels": layout(panels),
    }


# -- the dashboards -------------------------------------------------------------------------------------------------


def classified_share(h: int = 4) -> dict[str, Any]:
    classified = increase("netgpt_flows_classified_total")
    unclassified = increase("netgpt_flows_unclassified_total")
    return stat("Classified", "Share of the ended flows the model gave a verdict, over the time range.",
                [target(f"{classified} / ({classified} + ({unclassified} or vector(0)))", "classified", instant=True)],
                "percentunit", h=h, defaults={"min": 0, "max": 1})


def uptime() -> dict[str, Any]:
    return stat("Uptime", "Seconds since each sensor's daemon started.",
                [target(f"max by ({PER_SENSOR}) (netgpt_uptime_seconds{SEL})", SENSOR_LEGEND)], "s")


def overview() -> dict[str, Any]:
    panels = [
        uptime(),
        stat("Active flows", "Flows in the flow tables now.", [target(f"sum(netgpt_flows_active{SEL})", "active")],
             "short"),
        stat("Traffic", "Bytes per second captured (all sensors picked).",
             [target(rate("netgpt_bytes_total"), "bytes/s")], "Bps"),
        stat("Flows ended", "Flows ended in the time range.",
             [target(or_zero(increase("netgpt_flows_ended_total")), "flows", instant=True)], "short"),
        stat("Alerts", "Alerts raised in the time range (model and rules).",
             [target(or_zero(increase("netgpt_alerts_total")), "alerts", instant=True)], "short",
             defaults=RED_FROM_ONE),
        classified_share(),
        row("Traffic"),
        timeseries("Bytes per second", "Bytes captured per second, by sensor.",
                   [target(rate("netgpt_bytes_total", PER_SENSOR), SENSOR_LEGEND)], "Bps"),
        timeseries("Packets per second", "Packets captured per second, by sensor.",
                   [target(rate("netgpt_packets_total", PER_SENSOR), SENSOR_LEGEND)], "pps"),
        row("Applications"),
        timeseries("Flows by app", "Flows ended per second, by the model's app verdict.",
                   [target(rate("netgpt_flows_ended_total", "app"), "{{app}}")], "short", stack=True),
        timeseries("Bytes by app", "Bytes per second of the ended flows, by app (counted when a flow ends).",
                   [target(rate("netgpt_flow_bytes_total", "app"), "{{app}}")], "Bps", stack=True),
        timeseries("Packets by app", "Packets per second of the ended flows, by app.",
                   [target(rate("netgpt_flow_packets_total", "app"), "{{app}}")], "pps", stack=True),
        bargauge("Top apps by bytes", "The ten apps with the most bytes in the time range.",
                 [target(f"topk(10, {increase('netgpt_flow_bytes_total', 'app')})", "{{app}}", instant=True)],
                 "bytes"),
        row("Alerts"),
        timeseries("Alerts by category", "Alerts per second by category; 0 (category none) while there are none.",
                   [target(or_zero(rate("netgpt_alerts_total", "category"), "category"), "{{category}}")], "short",
                   stack=True),
        timeseries("Flows by attack verdict", "Flows ended per second, by the model's attack verdict.",
                   [target(rate("netgpt_flows_ended_total", "attack"), "{{attack}}")], "short", stack=True),
        table("Top alerting sources", "Alerts in the time range by what raised them (model, or a rule's name), "
              "category and severity. Metrics carry no addresses: the alerts themselves (EVE, MQTT) name the hosts.",
              f"sort_desc({increase('netgpt_alerts_total', 'source, category, severity')})",
              {"source": "source", "category": "category", "severity": "severity"}, value="alerts", w=24),
        row("Edge LLM trends"),
        timeseries("Trend forecast vs actual", f"{EDGE_LLM}: the edge LLM's forecast of each series (by horizon, "
                   "dashed) against the series' actual value.",
                   [target(f"max by (series) (netgpt_trend_actual{SEL})", "{{series}} actual"),
                    target(f"max by (series, horizon) (netgpt_trend_forecast{SEL})",
                           "{{series}} forecast +{{horizon}}")],
                   "short", w=24, overrides=[{"matcher": {"id": "byRegexp", "options": ".*forecast.*"},
                                              "properties": DASHED}]),
    ]
    return dashboard("netgptd-overview", "netgptd / Overview",
                     "Traffic, applications and alerts of the netgptd sensors.", panels)


def health() -> dict[str, Any]:
    drops = f"({increase('netgpt_capture_drops_total')} or vector(0))"
    mqtt_states = {"0": {"text": "disconnected", "color": "red", "index": 0},
                   "1": {"text": "connected", "color": "green", "index": 1}}
    panels = [
        uptime(),
        table("Sensors", "Each sensor's netgptd version.", f"max by ({PER_SENSOR}, version) (netgpt_build_info{SEL})",
              {"site": "site", "sensor": "sensor", "instance": "endpoint", "version": "version"}, w=8, h=4),
        stat("Capture drop share", "Packets dropped by the capture (kernel, interface) over packets seen plus "
             "dropped, in the time range.",
             [target(f"{drops} / ({increase('netgpt_packets_total')} + {drops})", "dropped", instant=True)],
             "percentunit", defaults=thresholds(("green", None), ("orange", 0.001), ("red", 0.01))),
        stat("Flow table emergencies", "Times the flow table was full and went to emergency timeouts, in the time "
             "range.", [target(increase("netgpt_flow_emergency_total"), "emergencies", instant=True)], "short",
             defaults=RED_FROM_ONE),
        stat("Watchdog stalls", "Pipeline stalls the watchdog saw in the time range.",
             [target(increase("netgpt_watchdog_stalls_total"), "stalls", instant=True)], "short",
             defaults=RED_FROM_ONE),
        stat("Python fallback", "1 where a sensor parses, decodes and tracks packets in Python because the compiled "
             "hot path is not built (engine = auto); 0 on the compiled path.",
             [target(f"max by ({PER_SENSOR}) (netgpt_hotpath_fallback{SEL})", SENSOR_LEGEND)], "none",
             defaults=RED_FROM_ONE),
        row("Capture and decode"),
        timeseries("Capture drops", "Packets dropped per second, by where (kernel, interface).",
                   [target(or_zero(rate("netgpt_capture_drops_total", "where"), "where"), "{{where}}")], "pps"),
        timeseries("Decode errors", "Packets the decoder could not read, per second, by reason.",
                   [target(or_zero(rate("netgpt_decode_errors_total", "reason"), "reason"), "{{reason}}")], "pps"),
        timeseries("Skipped packets", "Packets not tracked, per second: by kind (not IP: ARP, ...), and IP "
                   "fragments that matched no flow.",
                   [target(or_zero(rate("netgpt_skipped_packets_total", "kind"), "kind"), "{{kind}}"),
                    target(rate("netgpt_fragments_unmatched_total"), "unmatched fragments")], "pps"),
        timeseries("Plugin errors", "Plugin hook failures per second, by plugin.",
                   [target(or_zero(rate("netgpt_plugin_errors_total", "plugin"), "plugin"), "{{plugin}}")], "short"),
        row("Pipeline"),
        timeseries("Queue depth vs capacity", "Items waiting in each pipeline queue (solid) against its capacity "
                   "(dashed).",
                   [target(f"max by (queue) (netgpt_queue_depth{SEL})", "{{queue}} depth"),
                    target(f"max by (queue) (netgpt_queue_capacity{SEL})", "{{queue}} capacity")], "short",
                   overrides=[{"matcher": {"id": "byRegexp", "options": ".* capacity"}, "properties": DASHED}]),
        bargauge("Queue fill", "Each queue's depth over its capacity now (the fullest sensor).",
                 [target(f"max by (queue) (netgpt_queue_depth{SEL} / netgpt_queue_capacity{SEL})", "{{queue}}",
                         instant=True)], "percentunit",
                 defaults={"min": 0, "max": 1, **thresholds(("green", None), ("orange", 0.5), ("red", 0.9))}),
        timeseries("Unclassified flows", "Ended flows the model gave no verdict, per second, by reason.",
                   [target(or_zero(rate("netgpt_flows_unclassified_total", "reason"), "reason"), "{{reason}}")],
                   "short"),
        timeseries("Watchdog", "systemd watchdog pings per second, and stalls in each interval (pings stay 0 "
                   "without systemd's watchdog).",
                   [target(rate("netgpt_watchdog_pings_total"), "pings/s"),
                    target(increase("netgpt_watchdog_stalls_total", window="$__rate_interval"), "stalls")], "short",
                   overrides=[{"matcher": {"id": "byName", "options": "stalls"},
                               "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}]),
        row("Flow table"),
        timeseries("Active flows", "Flows in the flow table, by sensor.",
                   [target(f"sum by ({PER_SENSOR}) (netgpt_flows_active{SEL})", SENSOR_LEGEND)], "short"),
        timeseries("New flows", "Flows started per second, by sensor.",
                   [target(rate("netgpt_flows_total", PER_SENSOR), SENSOR_LEGEND)], "short"),
        timeseries("Flow evictions", "Flows ended per second by why (timeout, emergency, tcp reuse, shutdown, ...), "
                   "and emergency-mode entries.",
                   [target(or_zero(rate("netgpt_flow_evictions_total", "reason"), "reason"), "{{reason}}"),
                    target(increase("netgpt_flow_emergency_total", window="$__rate_interval"), "emergency entries")],
                   "short", w=24),
        row("MQTT"),
        stat("MQTT connected", "Whether each sensor's MQTT client is connected to the broker now (no data: MQTT "
             "is off).", [target(f"max by ({PER_SENSOR}) (netgpt_mqtt_connected{SEL})", SENSOR_LEGEND)], "none",
             defaults={"mappings": [{"type": "value", "options": mqtt_states}]}),
        stat("MQTT reconnects", "Reconnections to the broker in the time range.",
             [target(increase("netgpt_mqtt_reconnects_total"), "reconnects", instant=True)], "short"),
        stat("MQTT dropped", "Events dropped from a full outbox in the time range.",
             [target(increase("netgpt_mqtt_outbox_dropped_total"), "dropped", instant=True)], "short",
             defaults=RED_FROM_ONE),
        timeseries("MQTT outbox depth", "Events waiting to be published, by sensor.",
                   [target(f"max by ({PER_SENSOR}) (netgpt_mqtt_outbox_depth{SEL})", SENSOR_LEGEND)], "short"),
        timeseries("MQTT throughput", "Events published, dropped from a full outbox, and reconnects, per second.",
                   [target(rate("netgpt_mqtt_published_total"), "published"),
                    target(rate("netgpt_mqtt_outbox_dropped_total"), "dropped"),
                    target(rate("netgpt_mqtt_reconnects_total"), "reconnects")], "short", w=24),
        row("Rule detectors and the ask channel"),
        timeseries("Rule windows", "Windows the rule detectors keep now, by rule (each rule's table is bounded by "
                   "max_keys), and the offenders kept quiet after an alert.",
                   [target(f"max by (rule) (netgpt_rules_windows{SEL})", "{{rule}}"),
                    target(f"max(netgpt_rules_cooldowns{SEL})", "cool-downs")], "short"),
        timeseries("Rule tables under pressure", "Per second, by rule: windows evicted for room (a spoofed flood "
                   "brings a key per flow) and values counted in a sketch past a window's exact cap; cool-downs "
                   "forgotten for room.",
                   [target(or_zero(rate("netgpt_rules_evicted_total", "rule"), "rule"), "evicted {{rule}}"),
                    target(or_zero(rate("netgpt_rules_sketched_total", "rule"), "rule"), "sketched {{rule}}"),
                    target(or_zero(rate("netgpt_rules_cooldowns_evicted_total")), "cool-downs evicted")], "short"),
        timeseries("Flood-flow summaries", "Flows of a flood written as part of a flood_summary rather than one "
                   "EVE/MQTT line each, summaries written (per second), and floods followed now ([flood_log]).",
                   [target(rate("netgpt_flows_summarised_total"), "flows summarised/s"),
                    target(rate("netgpt_flood_summaries_total"), "summaries/s"),
                    target(f"max(netgpt_floods_followed{SEL})", "floods followed")], "short"),
        stat("Ask connected", "Whether each sensor's ask plugin is connected to its broker now (no data: the ask "
             "plugin is off).", [target(f"max by ({PER_SENSOR}) (netgpt_ask_connected{SEL})", SENSOR_LEGEND)], "none",
             defaults={"mappings": [{"type": "value", "options": mqtt_states}]}, w=6),
        stat("Ask messages", "Messages read on .../ask in the time range, requests or not.",
             [target(increase("netgpt_ask_received_total"), "received", instant=True)], "short", w=6),
        timeseries("Ask channel", "Requests on .../ask per second: accepted (signed by a configured requester, "
                   "within its rate), rate limited, refused, dropped and malformed by reason (zero without the "
                   "ask plugin).",
                   [target(or_zero(rate("netgpt_ask_accepted_total")), "accepted"),
                    target(or_zero(rate("netgpt_ask_rate_limited_total")), "rate limited"),
                    target(or_zero(rate("netgpt_ask_refused_total", "reason"), "reason"), "refused {{reason}}"),
                    target(or_zero(rate("netgpt_ask_dropped_total", "reason"), "reason"), "dropped {{reason}}"),
                    target(or_zero(rate("netgpt_ask_malformed_total", "reason"), "reason"), "malformed {{reason}}")],
                   "short"),
    ]
    return dashboard("netgptd-health", "netgptd / Sensor health",
                     "Capture, decode, queues, flow table, MQTT, rules, the ask channel and watchdog of the netgptd "
                     "sensors.", panels)


def model() -> dict[str, Any]:
    latency = "netgpt_inference_duration_seconds"
    batch = "netgpt_inference_batch_size"

    def confidence(name: str, window: str) -> str:
        return f"sum by (le) (increase(netgpt_{name}_confidence_bucket{SEL}[{window}]))"

    panels = [
        table("Model", "The model each sensor runs: name, version, and the execution provider (CPU, CUDA, ...).",
              f"max by ({PER_SENSOR}, name, version, provider) (netgpt_model_info{SEL})",
              {"site": "site", "sensor": "sensor", "instance": "endpoint", "name": "model", "version": "version",
               "provider": "provider"}, w=16, h=5),
        stat("Inferences", "Model batches run per second.", [target(rate(f"{latency}_count"), "batches/s")],
             "short", h=5),
        classified_share(h=5),
        row("Inference"),
        timeseries("Inference latency", "Wall time of one model batch: quantiles from the histogram, and the mean.",
                   [target(quantile(0.5, latency), "p50"), target(quantile(0.9, latency), "p90"),
                    target(quantile(0.99, latency), "p99"), target(mean(latency), "mean")], "s"),
        timeseries("Batch size", "Flows per model batch: quantiles from the histogram, and the mean.",
                   [target(quantile(0.5, batch), "p50"), target(quantile(0.9, batch), "p90"),
                    target(quantile(0.99, batch), "p99"), target(mean(batch), "mean")], "short"),
        timeseries("Classified vs unclassified", "Ended flows per second that got the model's verdict, and those "
                   "that did not.",
                   [target(rate("netgpt_flows_classified_total"), "classified"),
                    target(or_zero(rate("netgpt_flows_unclassified_total")), "unclassified")], "short", stack=True),
        timeseries("Unclassified by reason", "Ended flows without a verdict, per second, by reason.",
                   [target(or_zero(rate("netgpt_flows_unclassified_total", "reason"), "reason"), "{{reason}}")],
                   "short"),
        row("Confidence"),
        heatmap("App confidence", "How sure the model was of its app verdicts: flows per confidence bucket over "
                "time.", confidence("app", "$__rate_interval")),
        heatmap("Attack confidence", "How sure the model was of its attack verdicts: flows per confidence bucket "
                "over time.", confidence("attack", "$__rate_interval")),
        bargauge("App confidence distribution", "Verdicts in the time range per app-confidence bucket (upper "
                 "bound).", [target(confidence("app", "$__range"), "{{le}}", instant=True, fmt="heatmap")], "short"),
        bargauge("Attack confidence distribution", "Verdicts in the time range per attack-confidence bucket (upper "
                 "bound).", [target(confidence("attack", "$__range"), "{{le}}", instant=True, fmt="heatmap")],
                 "short"),
    ]
    return dashboard("netgptd-model", "netgptd / Model",
                     "The NetGPT model on the netgptd sensors: latency, batches, coverage, confidence.", panels)


def fleet() -> dict[str, Any]:
    """Many sensors at a glance: which are up, what they drop, where the alerts are, which models run."""
    up_now = f"up{UP}"

    def drops(window: str) -> str:
        """Capture drops by site in ``window``, 0 for a site whose sensors dropped none (no series yet)."""
        return (f"({increase('netgpt_capture_drops_total', 'site', window)} or "
                f"{increase('netgpt_packets_total', 'site', window)} * 0)")  # fmt: skip

    panels = [
        stat("Sensors up", "Sensors whose metrics endpoint answered the last scrape (Prometheus's up, job "
             "netgptd).", [target(f"sum({up_now})", "up")], "short", w=6),
        stat("Sensors down", "Sensors whose last scrape failed: the sensor, its host, or the way to it is down.",
             [target(f"count({up_now} == 0) or vector(0)", "down")], "short", w=6, defaults=RED_FROM_ONE),
        stat("Alerts", "Alerts raised in the time range, all sensors picked.",
             [target(or_zero(increase("netgpt_alerts_total")), "alerts", instant=True)], "short", w=6,
             defaults=RED_FROM_ONE),
        stat("MQTT outbox drops", "Events dropped from a full MQTT outbox in the time range (a broker away for "
             "longer than outbox_max covers).",
             [target(or_zero(increase("netgpt_mqtt_outbox_dropped_total")), "dropped", instant=True)], "short",
             w=6, defaults=RED_FROM_ONE),
        row("Sites"),
        bargauge("Sensors up by site", "Sensors up, by site.", [target(f"sum by (site) ({up_now})", "{{site}}",
                 instant=True)], "short", w=8),
        bargauge("Alerts by site", "Alerts raised in the time range, by site.",
                 [target(f"sort_desc({or_zero(increase('netgpt_alerts_total', 'site'), 'site')})", "{{site}}",
                         instant=True)], "short", w=8),
        bargauge("Capture drops by site", "Packets the capture dropped (kernel, interface) in the time range, by "
                 "site; 0 where a site's sensors dropped none.",
                 [target(drops("$__range"), "{{site}}", instant=True)], "short", w=8),
        timeseries("Alerts per second by site", "Alerts per second, by site.",
                   [target(or_zero(rate("netgpt_alerts_total", "site"), "site"), "{{site}}")], "short", stack=True),
        timeseries("Capture drop share by site", "Packets dropped by the capture over packets seen plus dropped, "
                   "by site.",
                   [target(f"{drops(RATE)} / ({increase('netgpt_packets_total', 'site', RATE)} + {drops(RATE)})",
                           "{{site}}")],
                   "percentunit"),
        row("Sensors"),
        table("Sensors", "Every sensor: whether its last scrape succeeded (1 up, 0 down).",
              f"max by ({PER_SENSOR}) ({up_now})",
              {"site": "site", "sensor": "sensor", "instance": "endpoint"}, value="up", w=12),
        table("Alerts by sensor", "Alerts in the time range by sensor and category.",
              f"sort_desc({increase('netgpt_alerts_total', 'site, sensor, category')})",
              {"site": "site", "sensor": "sensor", "category": "category"}, value="alerts", w=12),
        row("Versions"),
        table("Model versions in use", "How many sensors run each model (name, version, execution provider).",
              f"count by (name, version, provider) (netgpt_model_info{SEL})",
              {"name": "model", "version": "version", "provider": "provider"}, value="sensors", w=12),
        table("netgptd versions in use", "How many sensors run each netgptd version.",
              f"count by (version) (netgpt_build_info{SEL})", {"version": "version"}, value="sensors", w=12),
        table("Sensors by model", "The model each sensor runs now (it changes on reload).",
              f"max by ({PER_SENSOR}, name, version) (netgpt_model_info{SEL})",
              {"site": "site", "sensor": "sensor", "instance": "endpoint", "name": "model", "version": "version"},
              w=24),
    ]
    return dashboard("netgptd-fleet", "netgptd / Fleet",
                     "Every site and sensor: up, drops, alerts by site, model and daemon versions in use.", panels)


BUILDERS = {"overview.json": overview, "health.json": health, "model.json": model, "fleet.json": fleet}


def render(builder: Any) -> str:
    return json.dumps(builder(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    DASHBOARDS.mkdir(exist_ok=True)
    for name, builder in BUILDERS.items():
        (DASHBOARDS / name).write_text(render(builder), encoding="utf-8")
        print(f"wrote {DASHBOARDS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
