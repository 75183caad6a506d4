"""Bounded flood-flow logging: under a flood, a summary per window instead of a line per flood flow.

A spoofed-source SYN flood makes every packet a flow of its own, and each
would become an EVE line (and an MQTT message): a million identical lines
that bury the alert. Once a rule detector has alerted on a flood or sweep
(``netgptd.rules``), the flows that belong to it (the unanswered flows to
the flood's victim, or from the sweeping source; the victim of a SYN-ACK
reflection: the lone SYN-ACKs to it) are written only up to
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
from netgptd.rules import reflected_synack, unanswered

# The rules whose alerts open a flood, and which side of a flow event names it: a flood's victim is the
# destination; a sweep's scanner, and a reflection's victim (the "client" the SYN-ACKs go to), the source.
FLOOD_SIDE = {"syn_flood": "dest_ip", "udp_flood": "dest_ip", "synack_reflection": "src_ip",
              "port_sweep": "src_ip", "host_sweep": "src_ip"}  # fmt: skip


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
        self.opened = 0  # floods followed since the start
        self.now = float("-inf")  # the latest flow time seen
        self._next_close = float("inf")  # the earliest end of a followed flood's window

    def __len__(self) -> int:
        return len(self._floods)

    def note_alert(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """Follow the flood an alert names (a rule's flood or sweep alert; others are ignored).

        Returns the summary of a flood dropped for room (``max_floods``), if any."""
        detector = (alert.get("netgpt") or {}).get("detector")
        side = FLOOD_SIDE.get(detector) if isinstance(detector, str) else None
        address = alert.get(side) if side else None
        if not self.settings.enabled or not isinstance(address, str) or (side, address) in self._floods:
            return []
        out = []
        if len(self._floods) >= self.settings.max_floods:
            _, oldest = self._floods.popitem(last=False)
            out = self._summary(oldest)
        start = self.now if self.now != float("-inf") else 0.0
        self._floods[(side, address)] = _Flood(detector, side, address, start, 2 * self.settings.top)
        self._next_close = min(self._next_close, start + self.settings.window_s)
        self.opened += 1
        return out

    def admit(self, event: dict[str, Any]) -> bool:
        """Whether a flow event is written: False when it belongs to a followed flood past its window's budget
        (then it is counted into that flood's summary). Call :meth:`expire` after a batch for the summaries."""
        when = flow_end_seconds(event)
        if when > self.now:
            self.now = when
        if not self._floods:
            return True
        flood = self._floods.get(("dest_ip", event["dest_ip"])) or self._floods.get(("src_ip", event["src_ip"]))
        if flood is None or event["proto"] not in ("TCP", "UDP") or not (unanswered(event) or reflected_synack(event)):
            return True
        flood.last = max(flood.last, when)
        if flood.written < self.settings.flows_per_window:
            flood.written += 1
            return True
        flood.summarise(event)
        self.summarised += 1
        return False

    def expire(self, flush: bool = False) -> list[dict[str, Any]]:
        """The summaries of the windows that closed by the latest flow time (all of them with ``flush``);
        a flood with no member flow for a whole window is no longer followed."""
        out: list[dict[str, Any]] = []
        span = self.settings.window_s
        if not flush and self.now < self._next_close:
            return out
        self._next_close = float("inf")
        for key, flood in list(self._floods.items()):
            if not flush and self.now < flood.window_start + span:
                self._next_close = min(self._next_close, flood.window_start + span)
                continue
            out += self._summary(flood)
            if flush or flood.last < self.now - span:
                del self._floods[key]
                continue
            flood.window_start += span * ((self.now - flood.window_start) // span)  # the window ``now`` is in
            flood.written = flood.flows = flood.packets = flood.bytes = 0
            flood.sources, flood.destinations = _TopList(2 * self.settings.top), _TopList(2 * self.settings.top)
        self._next_close = min((f.window_start + span for f in self._floods.values()), default=float("inf"))
        return out

    def _summary(self, flood: _Flood) -> list[dict[str, Any]]:
        """The ``flood_summary`` event of a flood's window (none when nothing was summarised in it)."""
        if not flood.flows:
            return []
        self.summaries += 1
        span = self.settings.window_s
        body = {"detector": flood.detector, "window_start": timestamp_at(flood.window_start), "window_s": span,
                "flows": flood.flows, "packets": flood.packets, "bytes": flood.bytes, "written": flood.written,
                "top_sources": flood.sources.top(self.settings.top),
                "top_destinations": flood.destinations.top(self.settings.top),
                "others": {"sources": flood.sources.others, "destinations": flood.destinations.others}}  # fmt: skip
        end = min(flood.window_start + span, max(self.now, flood.window_start))  # a flush ends the window early
        return [{"timestamp": timestamp_at(end), "event_type": "flood_summary",
                 flood.side: flood.address, "flood_summary": body}]  # fmt: skip

    def status(self) -> dict[str, int]:
        """The counters of the stats event (``flood_log``)."""
        return {"summarised": self.summarised, "summaries": self.summaries, "floods": len(self._floods),
                "opened": self.opened}  # fmt: skip
