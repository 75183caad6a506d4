"""A readable end-of-replay summary for people (EVE is for machines)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from netgptd.cloud.context import app_name
from netgptd.eve import alert_detector, stats_of
from netgptd.plugin_host import hookimpl



class SummaryCollector:
    """A plugin that keeps what the summary needs."""

    def __init__(self) -> None:
        self.by_proto: Counter[str] = Counter()
        self.by_service: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.stats: dict[str, Any] = {}

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        if event["event_type"] == "stats":
            self.stats = stats_of(event) or {}
            return
        if event["event_type"] == "alert":
            self.alerts[f"{event['alert']['category']} ({alert_detector(event)})"] += 1
            return
        if event["event_type"] != "flow":
            return
        self.by_proto[event["proto"]] += 1
        self.by_reason[event["flow"]["reason"]] += 1
        self.by_service[app_name(event)] += 1

    def render(self, top: int = 10) -> str:
        s = self.stats
        lines = [
            f"packets      {s.get('packets', 0):>12,}",
            f"bytes        {s.get('bytes', 0):>12,}",
            f"flows        {s.get('flows', 0):>12,}",
            f"not IP       {sum(s.get('skipped', {}).values()):>12,}",
            f"decode errors{sum(s.get('decode_errors', {}).values()):>12,}",
        ]
        for reason, count in s.get("decode_errors", {}).items():
            lines.append(f"  {reason:<24}{count:>8,}")
        lines.append("flows by protocol: " + ", ".join(f"{p} {n}" for p, n in self.by_proto.most_common()))
        lines.append("flows ended by:    " + ", ".join(f"{r} {n}" for r, n in self.by_reason.most_common()))
        lines.append("alerts:            " + (", ".join(f"{a} {n}" for a, n in self.alerts.most_common()) or "none"))
        lines.append(f"top {top} services (app, or proto/server port):")
        for service, count in self.by_service.most_common(top):
            lines.append(f"  {service:<24}{count:>8,}")
        return "\n".join(lines)
