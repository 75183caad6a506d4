"""Bounded flood-flow logging: under a flood, a summary per window instead of a line per flood flow.

A spoofed-source SYN flood makes every packet a flow of its own, and each
would become an EVE line (and an MQTT message): a million identical lines
that bury the alert. Once a rule detector has alerted on a flood or sweep
(``netgptd.rules``), the flows that belong to it (the unanswered flows to
the flood's victim, or from the sweeping source; the victim of a SYN-ACK
or UDP reflection: the lone SYN-ACKs or replies to it) are written only up to
``flows_per_window`` per flood and window; the rest are counted into one
``flood_summary`` event per flood and window (flows, packets, bytes, the
busiest sources and destinations, bounded), emitted when the window closes.
The alerts themselves, and every other flow, always go out.

Pure: time comes from the flows (their end), the caller feeds events in
output order and emits what :meth:`FloodLog.admit` and :meth:`FloodLog.expire`
return. Every structure is bounded: ``max_floods`` floods, ``2 * top``
exact entries per top list (further ones are counted in ``others``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from netgptd.config import FloodLogSettings
from netgptd.eve import flow_end_seconds, timestamp_at
from netgptd.rules import one_sided

# The rules whose alerts open a flood, and which side of a flow event names it: a flood's victim is the
# destination; a sweep's scanner, and a reflection's victim (the "client" the SYN-ACKs or UDP replies go to),
# the source.
FLOOD_SIDE = {"syn_flood": "dest_ip", "udp_flood": "dest_ip", "synack_reflection": "src_ip",
              "udp_reflection": "src_ip", "port_sweep": "src_ip", "host_sweep": "src_ip"}  # fmt: skip


class _TopList:
    """Flows per address, exact for the first ``cap`` addresses of a window; the rest counted in ``others``."""

    __slots__ = ("cap", "counts", "others")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.others = 0

    def add(self, address: str) -> None:
        counts = self.counts
        if address in counts:
            counts[address] += 1
        elif len(counts) < self.cap:
            counts[address] = 1
        else:
            self.others += 1

    def top(self, n: int) -> list[dict[str, Any]]:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]
        return [{"ip": address, "flows": flows} for address, flows in ranked]


class _Flood:
    """One flood's current window: what was written, and what was summarised."""

    __slots__ = ("detector", "side", "address", "window_start", "written", "flows", "packets", "bytes",
                 "sources", "destinations", "last")  # fmt: skip

    def __init__(self, detector: str, side: str, address: str, window_start: float, top_cap: int) -> None:
        self.detector, self.side, self.address = detector, side, address
        self.window_start = window_start
        self.last = window_start  # the latest member flow's time
        self.written = 0
        self.flows = self.packets = self.bytes = 0
        self.sources, self.destinations = _TopList(top_cap), _TopList(top_cap)

    def summarise(self, event: dict[str, Any]) -> None:
        flow = event["flow"]
        self.flows += 1
        self.packets += flow["pkts_toserver"] + flow["pkts_toclient"]
        self.bytes += flow["bytes_toserver"] + flow["bytes_toclient"]
        self.sources.add(event["src_ip"])
        self.destinations.add(event["dest_ip"])


class FloodLog:
    """Decides which flow events are written, and makes the summaries of those that are not."""

    def __init__(self, settings: FloodLogSettings | None = None) -> None:
        self.settings = settings or FloodLogSettings()
        self._floods: OrderedDict[tuple[str, str], _Flood] = OrderedDict()  # (side, address), oldest first
        self.summarised = 0  # flow events not written, counted into a summary
        self.summaries = 0  # flood_summary events made
        self.now = float("-inf")  # the latest flow time seen
        self._next_close = float("inf")  # the earliest end of a followed flood's window
        self._closed: list[dict[str, Any]] = []  # summaries of windows closed since the last expire

    def __len__(self) -> int:
        return len(self._floods)

    def note_alert(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """Follow the flood an alert names (a rule's flood or sweep alert; others are ignored), from the latest
        flow time on. Returns the summary of a flood dropped for room (``max_floods``), if any."""
        detector = (alert.get("netgpt") or {}).get("detector")
        side = FLOOD_SIDE.get(detector) if isinstance(detector, str) else None
        address = alert.get(side) if side else None
        if not self.settings.enabled or not isinstance(address, str) or (side, address) in self._floods:
            return []
        out: list[dict[str, Any]] = []
        if len(self._floods) >= self.settings.max_floods:
            _, oldest = self._floods.popitem(last=False)
            out = self._summary(oldest, self._early_end(oldest))
        start = self.now if self.now != float("-inf") else 0.0
        self._floods[(side, address)] = _Flood(detector, side, address, start, 2 * self.settings.top)
        self._next_close = min(self._next_close, start + self.settings.window_s)
        return out

    def admit(self, event: dict[str, Any]) -> bool:
        """Whether a flow event is written: False when it belongs to a followed flood past its window's budget
        (then it is counted into that flood's summary). Call :meth:`expire` after a batch for the summaries.

        An event without the fields of a flow (a plugin's own) is written."""
        try:
            when = flow_end_seconds(event)
        except (KeyError, TypeError, ValueError):
            return True
        if when > self.now:
            self.now = when
        if not self._floods:
            return True
        key = ("dest_ip", event.get("dest_ip"))
        flood = self._floods.get(key)
        if flood is None:
            key = ("src_ip", event.get("src_ip"))
            flood = self._floods.get(key)
        if flood is None or event.get("proto") not in ("TCP", "UDP") or not one_sided(event):
            return True
        if when >= flood.window_start + self.settings.window_s and not self._roll(key, flood, when):
            return True  # the flood had stopped for a whole window: no longer followed
        flood.last = max(flood.last, when)
        if flood.written < self.settings.flows_per_window:
            flood.written += 1
            return True
        flood.summarise(event)
        self.summarised += 1
        return False

    def expire(self, flush: bool = False) -> list[dict[str, Any]]:
        """The summaries of the windows that closed by the latest flow time (all of them with ``flush``, and
        then no flood is followed any more); a flood with no member flow for a whole window is no longer
        followed."""
        if not flush and self.now < self._next_close and not self._closed:
            return []
        if flush:
            for flood in self._floods.values():
                self._closed += self._summary(flood, self._early_end(flood))
            self._floods.clear()
        else:
            for key, flood in list(self._floods.items()):
                if self.now >= flood.window_start + self.settings.window_s:
                    self._roll(key, flood, self.now)
        span = self.settings.window_s
        self._next_close = min((f.window_start + span for f in self._floods.values()), default=float("inf"))
        out, self._closed = self._closed, []
        return out

    def _roll(self, key: tuple[str, str], flood: _Flood, at: float) -> bool:
        """Close the flood's window (``at`` is past it; its summary waits for :meth:`expire`) and move it to the
        window ``at`` is in; False, and the flood is no longer followed, when none of its flows came for a whole
        window."""
        span = self.settings.window_s
        self._closed += self._summary(flood, flood.window_start + span)
        if flood.last < at - span:
            del self._floods[key]
            return False
        flood.window_start += span * ((at - flood.window_start) // span)
        flood.written = flood.flows = flood.packets = flood.bytes = 0
        flood.sources, flood.destinations = _TopList(2 * self.settings.top), _TopList(2 * self.settings.top)
        self._next_close = min(self._next_close, flood.window_start + span)
        return True

    def _early_end(self, flood: _Flood) -> float:
        """When a window closed before its end (the input ended, a flood dropped for room) ends: the latest flow."""
        return min(flood.window_start + self.settings.window_s, max(self.now, flood.window_start))

    def _summary(self, flood: _Flood, end: float) -> list[dict[str, Any]]:
        """The ``flood_summary`` event of a flood's window, at its ``end`` (none when nothing was summarised)."""
        if not flood.flows:
            return []
        self.summaries += 1
        body = {"detector": flood.detector, "window_start": timestamp_at(flood.window_start),
                "window_s": self.settings.window_s, "flows": flood.flows, "packets": flood.packets,
                "bytes": flood.bytes, "written": flood.written, "top_sources": flood.sources.top(self.settings.top),
                "top_destinations": flood.destinations.top(self.settings.top),
                "others": {"sources": flood.sources.others, "destinations": flood.destinations.others}}  # fmt: skip
        return [{"timestamp": timestamp_at(end), "event_type": "flood_summary", flood.side: flood.address,
                 "flood_summary": body}]  # fmt: skip

    def status(self) -> dict[str, int]:
        """The counters of the stats event (``flood_log``)."""
        return {"summarised": self.summarised, "summaries": self.summaries, "floods": len(self._floods)}
