"""Fixed time windows of one sensor's traffic, built from its EVE events.

Pure: no clock is read. Time comes with the events, so replaying a capture
gives the same windows as watching it live, and tests need no sleeping.

A flow counts in the window of its **end** time. A flow event is only written
when the flow ends (FIN/RST or timeout), and its bytes are only known then;
attributing it to its start would mean holding every window open for as long
as the longest flow timeout, or rewriting windows already handed on. Because
flows are reported at their end, a window's flow count is also the rate at
which flows finish, which in a steady state equals the rate at which they
begin: that is what ``new_flow_rate`` reports, without waiting for starts.

Events whose window has already closed (a flow that timed out and was
reported after later traffic moved the clock on) are counted in the open
window and in its ``late`` counter, so volumes are never lost and lateness
stays visible.

One aggregator serves one sensor; a collector of many sensors keeps one per
(site, sensor), each with its own clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from netgptd.eve import FlowEvent, event_seconds

log = structlog.get_logger(__name__)

UNCLASSIFIED = "unclassified"
TRAFFIC_METRICS = ("flows", "bytes", "packets")


def event_time(event: dict[str, Any]) -> float | None:
    """When an event counts: a flow at its end, anything else at its timestamp; None if unreadable."""
    if isinstance(event, FlowEvent):
        return event.end_s
    flow = event.get("flow") if event.get("event_type") == "flow" else None
    text = (flow or {}).get("end") or event.get("timestamp")
    try:
        return event_seconds(text) if isinstance(text, str) else None
    except ValueError:
        return None


@dataclass
class Traffic:
    """Flows, bytes and packets (both directions) of a set of flows."""

    flows: int = 0
    bytes: int = 0
    packets: int = 0

    def add(self, other: Traffic) -> None:
        self.flows += other.flows
        self.bytes += other.bytes
        self.packets += other.packets

    @classmethod
    def of_flow(cls, event: dict[str, Any]) -> Traffic:
        flow = event.get("flow") or {}
        return cls(1, int(flow.get("bytes_toserver") or 0) + int(flow.get("bytes_toclient") or 0),
                   int(flow.get("pkts_toserver") or 0) + int(flow.get("pkts_toclient") or 0))  # fmt: skip


def _add_to(table: dict[str, Traffic], key: str, traffic: Traffic) -> None:
    table.setdefault(key, Traffic()).add(traffic)


@dataclass
class Window:
    """What one sensor saw in ``[start, start + width)`` (seconds since the epoch)."""

    site: str
    sensor: str
    start: float
    width: float
    total: Traffic = field(default_factory=Traffic)
    apps: dict[str, Traffic] = field(default_factory=dict)  # netgpt.app, or "unclassified"
    attacks: dict[str, Traffic] = field(default_factory=dict)  # netgpt.attack, flows with a verdict only
    alerts: dict[str, int] = field(default_factory=dict)  # alert.category -> count
    late: int = 0  # events counted here because their own window had closed

    @property
    def end(self) -> float:
        return self.start + self.width

    @property
    def new_flow_rate(self) -> float:
        """Flows per second (see the module docstring for why ended flows measure new ones)."""
        return self.total.flows / self.width

    def is_empty(self) -> bool:
        return self.total.flows == 0 and not self.alerts

    def count(self, event: dict[str, Any]) -> None:
        """Add a flow or alert event; other event types carry nothing to count."""
        kind = event.get("event_type")
        if kind == "flow":
            traffic = Traffic.of_flow(event)
            verdict = event.get("netgpt") or {}
            self.total.add(traffic)
            _add_to(self.apps, verdict.get("app") or UNCLASSIFIED, traffic)
            if verdict.get("attack"):
                _add_to(self.attacks, verdict["attack"], traffic)
        elif kind == "alert":
            category = (event.get("alert") or {}).get("category") or UNCLASSIFIED
            self.alerts[category] = self.alerts.get(category, 0) + 1

    def merge(self, other: Window) -> None:
        """Add another part of the same window (e.g. one flushed before a restart)."""
        if (other.site, other.sensor, other.start, other.width) != (self.site, self.sensor, self.start, self.width):
            raise ValueError("only parts of the same window can be merged")
        self.total.add(other.total)
        for name, traffic in other.apps.items():
            _add_to(self.apps, name, traffic)
        for name, traffic in other.attacks.items():
            _add_to(self.attacks, name, traffic)
        for category, n in other.alerts.items():
            self.alerts[category] = self.alerts.get(category, 0) + n
        self.late += other.late

    def top_apps(self, n: int, by: str = "bytes") -> list[tuple[str, Traffic]]:
        """The ``n`` largest applications by ``by`` (flows, bytes or packets), ties by name."""
        if by not in TRAFFIC_METRICS:
            raise ValueError(f"top_apps by {by!r}: use one of {', '.join(TRAFFIC_METRICS)}")
        return sorted(self.apps.items(), key=lambda item: (-getattr(item[1], by), item[0]))[:n]

    def value(self, metric: str, key: str | None = None) -> float:
        """One number of this window, for a time series.

        ``metric`` is ``flows``, ``bytes``, ``packets`` or ``new_flow_rate``
        (whole window, or one part of it with ``key`` ``app:NAME`` or
        ``attack:NAME``), or ``alerts`` (all, or ``key`` = one category).
        Something this window did not see is 0.
        """
        if metric == "alerts":
            return float(sum(self.alerts.values()) if key is None else self.alerts.get(key, 0))
        traffic = self._traffic(key)
        if metric == "new_flow_rate":
            return traffic.flows / self.width
        if metric in TRAFFIC_METRICS:
            return float(getattr(traffic, metric))
        raise ValueError(f"unknown metric {metric!r}: use alerts, new_flow_rate or {', '.join(TRAFFIC_METRICS)}")

    def _traffic(self, key: str | None) -> Traffic:
        if key is None:
            return self.total
        kind, _, name = key.partition(":")
        tables = {"app": self.apps, "attack": self.attacks}
        if kind not in tables or not name:
            raise ValueError(f"unknown key {key!r}: use app:NAME or attack:NAME")
        return tables[kind].get(name, Traffic())

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site, "sensor": self.sensor, "start": self.start, "width": self.width,
            "total": asdict(self.total),
            "apps": {name: asdict(t) for name, t in self.apps.items()},
            "attacks": {name: asdict(t) for name, t in self.attacks.items()},
            "alerts": dict(self.alerts), "late": self.late,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(
            site=data["site"], sensor=data["sensor"], start=float(data["start"]), width=float(data["width"]),
            total=Traffic(**data["total"]),
            apps={name: Traffic(**t) for name, t in data["apps"].items()},
            attacks={name: Traffic(**t) for name, t in data["attacks"].items()},
            alerts={category: int(n) for category, n in data["alerts"].items()}, late=int(data["late"]),
        )  # fmt: skip


class WindowAggregator:
    """Turns one sensor's events into consecutive fixed windows.

    Windows are aligned to multiples of ``width`` since the epoch, so sensors
    share boundaries. Quiet windows are emitted empty (a quiet minute is a 0
    in a series, not a gap), but at most ``max_gap`` of them per jump in time,
    so a corrupt far-future timestamp cannot make millions.
    """

    def __init__(self, site: str = "default", sensor: str = "sensor", width: float = 60.0,
                 max_gap: int = 1440) -> None:  # fmt: skip
        if not width > 0:
            raise ValueError(f"window width must be positive, not {width}")
        self.site, self.sensor, self.width, self.max_gap = site, sensor, float(width), max_gap
        self._open: Window | None = None

    def feed(self, event: dict[str, Any]) -> list[Window]:
        """Count one EVE event; returns the windows its time closed (oldest first)."""
        when = event_time(event)
        if when is None:
            log.debug("trend_event_without_time", event_type=event.get("event_type"))
            return []
        closed = self.close_until(when)
        window = self._open or self._start(when)
        if when < window.start:
            window.late += 1
        window.count(event)
        return closed

    def close_until(self, ts: float) -> list[Window]:
        """Close every window that ends at or before ``ts`` (for quiet periods: call it on a timer)."""
        window = self._open
        if window is None or ts < window.end:
            return []
        closed = [window]
        quiet = math.floor((ts - window.end) / self.width)
        if quiet > self.max_gap:
            log.warning("trend_window_gap", site=self.site, sensor=self.sensor, skipped=quiet - self.max_gap,
                        start=window.end)  # fmt: skip
        first = window.end + max(0, quiet - self.max_gap) * self.width
        closed += [self._window(first + i * self.width) for i in range(min(quiet, self.max_gap))]
        self._start(ts)
        return closed

    def flush(self) -> list[Window]:
        """Hand on the open window as it is (at shutdown); nothing if it saw nothing."""
        window, self._open = self._open, None
        return [window] if window is not None and not window.is_empty() else []

    def _start(self, ts: float) -> Window:
        self._open = self._window(math.floor(ts / self.width) * self.width)
        return self._open

    def _window(self, start: float) -> Window:
        return Window(self.site, self.sensor, start, self.width)


STATS_CLOSE_MIN = 300.0  # seconds: a stats event closes windows only this close to the event clock (at least)


class EventWindows:
    """Windows from the daemon's event stream: flows and alerts feed them, and a ``stats`` event closes
    quiet windows (a live capture with no traffic), but only when its time is near the events' own
    clock, so a replayed capture's windows close by its own traffic alone. Pure: time comes with events."""

    def __init__(self, site: str, sensor: str, width: float) -> None:
        self.aggregator = WindowAggregator(site, sensor, width)
        self.stats_close_max = max(STATS_CLOSE_MIN, 5 * width)
        self.clock: float | None = None  # the latest event time counted (or stats time applied)

    def feed(self, event: dict[str, Any]) -> list[Window]:
        """The windows this event closed."""
        kind = event.get("event_type")
        when = event_time(event)
        if kind in ("flow", "alert"):
            closed = self.aggregator.feed(event)
            if when is not None:
                self.clock = when if self.clock is None else max(self.clock, when)
            return closed
        if kind == "stats" and when is not None and self.clock is not None and 0 < when - self.clock <= self.stats_close_max:
            self.clock = when
            return self.aggregator.close_until(when)
        return []

    def flush(self) -> list[Window]:
        return self.aggregator.flush()
