"""Prompt completion: an operator's short question, completed by the edge with what the sensor knows.

The second NetGPT paper splits the work: the edge, which sees the traffic,
turns a concise question into a comprehensive prompt; the cloud LLM, which
knows the world, answers it. Here the completion is a **template**, not a
model: :class:`SensorState` keeps a small picture of the sensor from its EVE
events (the latest stats, the last alerts, the applications of the last
flows, the trends plugin's latest window and forecasts, and ``intent``
events when an edge intent model emits them), and
:func:`complete_prompt` writes it out under the question. Nothing is
inferred that the events do not say.

Pure apart from reading the clock for "now" (which tests pass in).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from netgptd.eve import alert_detector, stats_of

SYSTEM_PROMPT = (
    "You are a network operations assistant for the site described below. "
    "An edge sensor (netgptd) watches its traffic and has added the context under the operator's question. "
    "Answer the question from that context and your knowledge of networks; say so when the context does not "
    "tell. Addresses are replaced by placeholders such as HOST-1 or MAC-1: refer to hosts by those names."
)
TOP_APPS = 8
SHOWN_ALERTS = 10
SHOWN_INTENTS = 5
MAX_TRENDS = 12  # series of one window kept
STATS_KEYS = ("uptime", "packets", "bytes", "flows", "active_flows", "classified", "alerts")


@dataclass(frozen=True)
class SiteProfile:
    """Who the sensor is: from ``[sensor]`` (site, sensor, location, role) and the ask plugin (working hours)."""

    site: str = "default"
    sensor: str = "sensor"
    location: str = ""
    role: str = ""
    working_hours: str = ""


def app_name(event: dict[str, Any]) -> str:
    """A flow's application: the model's verdict, else the protocol and server port (``tcp/443``)."""
    verdict = event.get("netgpt") or {}
    app = verdict.get("app") or event.get("app_proto")
    if app:
        return str(app).lower()
    proto = str(event.get("proto") or "?").lower()
    return f"{proto}/{event['dest_port']}" if "dest_port" in event else proto


@dataclass
class AppTraffic:
    flows: int = 0
    bytes: int = 0


class SensorState:
    """A bounded picture of the sensor, kept up to date from its events (loop thread only).

    ``recent_flows`` flows and ``recent_alerts`` alerts are remembered (the
    oldest go first); alert categories are also counted since the start.
    """

    def __init__(self, recent_flows: int = 1000, recent_alerts: int = 20, recent_intents: int = 20) -> None:
        if min(recent_flows, recent_alerts, recent_intents) < 1:
            raise ValueError("recent_flows, recent_alerts and recent_intents must be at least 1")
        self.stats: dict[str, Any] = {}
        self.stats_time = ""
        self.flows: deque[tuple[str, int]] = deque(maxlen=recent_flows)  # (app, bytes)
        self.apps: dict[str, AppTraffic] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=recent_alerts)
        self.alerts_total: Counter[str] = Counter()  # category -> alerts since start
        self.intents: deque[dict[str, Any]] = deque(maxlen=recent_intents)
        self.trends: dict[str, dict[str, Any]] = {}  # series -> its trend of the latest window
        self.flows_seen = 0

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if kind == "flow":
            self._flow(event)
        elif kind == "alert":
            alert = event.get("alert") or {}
            self.alerts.append(event)
            self.alerts_total[str(alert.get("category") or "uncategorised")] += 1
        elif kind == "stats":
            self.stats = dict(stats_of(event) or {})
            self.stats_time = str(event.get("timestamp") or "")
        elif kind == "intent":
            self.intents.append(event)
        elif kind == "trend":
            self._trend(event.get("trend") or {})

    def _trend(self, trend: dict[str, Any]) -> None:
        """Keep the latest window's trend of each series (a newer window replaces them all)."""
        start = str(trend.get("window_start") or "")
        latest = max((str(t.get("window_start") or "") for t in self.trends.values()), default="")
        if start < latest or "series" not in trend:
            return
        if start > latest:
            self.trends = {}
        if len(self.trends) < MAX_TRENDS or trend["series"] in self.trends:
            self.trends[str(trend["series"])] = trend

    def _flow(self, event: dict[str, Any]) -> None:
        flow = event.get("flow") or {}
        size = int(flow.get("bytes_toserver") or 0) + int(flow.get("bytes_toclient") or 0)
        if len(self.flows) == self.flows.maxlen:  # the oldest leaves the counts
            old_app, old_bytes = self.flows[0]
            counts = self.apps[old_app]
            counts.flows -= 1
            counts.bytes -= old_bytes
            if counts.flows == 0:
                del self.apps[old_app]
        app = app_name(event)
        self.flows.append((app, size))
        counts = self.apps.setdefault(app, AppTraffic())
        counts.flows += 1
        counts.bytes += size
        self.flows_seen += 1

    def top_apps(self, n: int = TOP_APPS) -> list[tuple[str, AppTraffic]]:
        """The applications of the recent flows, most flows first (ties: most bytes, then name)."""
        return sorted(self.apps.items(), key=lambda item: (-item[1].flows, -item[1].bytes, item[0]))[:n]

    def recent_alert_categories(self) -> Counter[str]:
        return Counter(str((a.get("alert") or {}).get("category") or "uncategorised") for a in self.alerts)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover -- the loop returns


def _figure(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def describe_alert(event: dict[str, Any]) -> str:
    """One line: when, what, who to whom."""
    alert = event.get("alert") or {}
    where = f"{event.get('src_ip', '?')}"
    if "src_port" in event:
        where += f":{event['src_port']}"
    where += f" -> {event.get('dest_ip', '?')}"
    if "dest_port" in event:
        where += f":{event['dest_port']}"
    where += f"/{event.get('proto', '?')}"
    detector = alert_detector(event) or "?"
    confidence = (event.get("netgpt") or {}).get("confidence")
    extra = f", confidence {confidence}" if confidence is not None and detector == "model" else ""
    return (f"{event.get('timestamp', '?')} [{alert.get('category', 'uncategorised')}] "
            f"{alert.get('signature', '?')} (severity {alert.get('severity', '?')}, "
            f"from {detector}{extra}): {where}")  # fmt: skip


def _intent_line(event: dict[str, Any]) -> str:
    body = event.get("intent", {k: v for k, v in event.items() if k not in ("event_type", "timestamp")})
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"), default=str)
    return f"{event.get('timestamp', '?')} {text[:300]}"


def context_lines(profile: SiteProfile, state: SensorState, now: datetime) -> list[str]:
    """The context the edge adds to a question, as text lines (addresses not yet redacted)."""
    lines = ["Site profile:", f"- site: {profile.site} (sensor {profile.sensor})"]
    lines.append(f"- location: {profile.location or 'not configured'}")
    lines.append(f"- role: {profile.role or 'not configured'}")
    lines.append(f"- working hours: {profile.working_hours or 'not configured'}")
    lines.append(f"- local time at the sensor now: {now.strftime('%A %Y-%m-%d %H:%M %Z').strip()}")

    lines += ["", "Current state:"]
    stats = state.stats
    if stats:
        shown = ", ".join(f"{k.replace('_', ' ')} {stats[k]:,}" if isinstance(stats[k], int) else f"{k} {stats[k]}"
                          for k in STATS_KEYS if k in stats)  # fmt: skip
        lines.append(f"- sensor counters at {state.stats_time or '?'} (since start): {shown}")
        if "active_flows" in stats:
            lines.append(f"- active flows now: {stats['active_flows']:,}")
    else:
        lines.append("- no stats event seen yet")
    if state.apps:
        apps = ", ".join(f"{name} {t.flows} flows / {_size(t.bytes)}" for name, t in state.top_apps())
        lines.append(f"- top applications of the last {len(state.flows):,} ended flows: {apps}")
    else:
        lines.append("- no ended flow seen yet")
    if state.alerts_total:
        recent = ", ".join(f"{c} {n}" for c, n in state.recent_alert_categories().most_common())
        total = ", ".join(f"{c} {n}" for c, n in state.alerts_total.most_common())
        lines.append(f"- alerts by category, last {len(state.alerts)}: {recent}; since start: {total}")
    else:
        lines.append("- no alerts since start")

    if state.trends:
        first = next(iter(state.trends.values()))
        lines += ["", f"Traffic trend (trends plugin: window of {first.get('window_s', '?')} s from "
                      f"{first.get('window_start', '?')}, {first.get('metric', '?')}, forecasts by "
                      f"{first.get('forecaster', '?')}):"]  # fmt: skip
        for series, trend in state.trends.items():
            ahead = ", ".join(_figure(p.get("value")) for p in (trend.get("forecast") or [])[:3])
            lines.append(f"- {series}: {_figure(trend.get('actual'))} in that window; next windows forecast: {ahead or 'none'}")
    if state.alerts:
        lines += ["", f"Recent alerts (newest first, up to {SHOWN_ALERTS}):"]
        lines += [f"- {describe_alert(a)}" for a in list(state.alerts)[::-1][:SHOWN_ALERTS]]
    if state.intents:
        lines += ["", f"Intents inferred by the edge model (newest first, up to {SHOWN_INTENTS}):"]
        lines += [f"- {_intent_line(i)}" for i in list(state.intents)[::-1][:SHOWN_INTENTS]]
    return lines


def complete_prompt(question: str, profile: SiteProfile, state: SensorState, now: datetime | None = None) -> str:
    """The operator's question completed with the sensor's context (the user message; addresses not redacted)."""
    now = now or datetime.now().astimezone()
    lines = [*context_lines(profile, state, now), "", f"Operator question: {question.strip()}"]
    return "\n".join(lines)


def local_summary(state: SensorState) -> str:
    """A few lines for an answer made without a cloud LLM."""
    parts = []
    if state.stats:
        parts.append(f"{state.stats.get('active_flows', '?')} active flows, "
                     f"{state.stats.get('flows', '?')} flows ended since start")  # fmt: skip
    if state.apps:
        parts.append("top applications: " + ", ".join(f"{name} ({t.flows})" for name, t in state.top_apps(3)))
    if state.alerts_total:
        parts.append("alerts: " + ", ".join(f"{c} {n}" for c, n in state.alerts_total.most_common()))
        parts.append("latest alert: " + describe_alert(state.alerts[-1]))
    else:
        parts.append("no alerts")
    return "; ".join(parts) + "."
