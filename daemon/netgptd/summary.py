"""A readable end-of-replay summary for people (EVE is for machines)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from netgptd.eve import alert_detector, stats_of
from netgptd.plugin_host import hookimpl

# What each flow end reason means (EVE's flow.reason, Suricata's values).
END_REASONS = {
    "timeout": "idle, or evicted from a full table (flow.emergency)",
    "forced": "long-lived, reported and continued",
    "tcp_reuse": "a new SYN on a closed connection",
    "shutdown": "still open at the capture's end",
}
# Why a flow got no verdict (the stats' ``unclassified`` counts, as in ``run``).
UNCLASSIFIED_REASONS = {
    "no_payload": "no payload: a lone SYN or a handshake without data leaves the model nothing to read",
    "overload": "the model fell behind and its queue was full",
    "shutdown": "still waiting for the model at stop",
}


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in counter.most_common())


class SummaryCollector:
    """A plugin that keeps what the summary needs."""

    def __init__(self) -> None:
        self.by_proto: Counter[str] = Counter()
        self.by_app: Counter[str] = Counter()  # NetGPT's labels, as the model spells them
        self.by_attack: Counter[str] = Counter()
        self.by_port: Counter[str] = Counter()  # proto/server port, for flows without a verdict
        self.by_reason: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.flows = 0
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
        self.flows += 1
        self.by_proto[event["proto"]] += 1
        self.by_reason[event["flow"]["reason"]] += 1
        verdict = event.get("netgpt") or {}
        if verdict.get("app") is not None:
            self.by_app[verdict["app"]] += 1
            self.by_attack[verdict.get("attack") or "?"] += 1
        else:
            proto = event["proto"].lower()
            self.by_port[f"{proto}/{event['dest_port']}" if "dest_port" in event else proto] += 1

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
        lines.append(f"flows by protocol: {_counts(self.by_proto)}")
        ended = ", ".join(f"{r} {n:,} ({END_REASONS.get(r, r)})" for r, n in self.by_reason.most_common())
        lines.append(f"flows ended by:    {ended}")
        lines.append(f"alerts:            {_counts(self.alerts) or 'none'}")
        lines += self._verdicts(top)
        return "\n".join(lines)

    def _verdicts(self, top: int) -> list[str]:
        """What NetGPT named, and why the other flows have no verdict."""
        if "classified" not in self.stats:  # no model ran: ports are all there is
            lines = ["NetGPT verdicts:   none (no model)",
                     f"server ports (proto/port), the top {top} with more than one flow:"]
            shown = [(port, n) for port, n in self.by_port.most_common(top) if n > 1]  # not a sweep's probes
            lines += [f"  {port:<24}{n:>8,}" for port, n in shown]
            once = sum(1 for n in self.by_port.values() if n == 1)
            return lines + ([f"  and {once:,} ports with one flow each"] if once else [])
        classified = sum(self.by_app.values())
        lines = [f"NetGPT verdicts:   {classified:,} of {self.flows:,} flows"]
        unclassified = Counter(self.stats.get("unclassified") or {})
        for reason, n in unclassified.most_common():
            lines.append(f"  no verdict {n:>8,}  {UNCLASSIFIED_REASONS.get(reason, reason)}")
        unexplained = self.flows - classified - sum(unclassified.values())
        if unexplained > 0:
            lines.append(f"  no verdict {unexplained:>8,}  (reason not recorded)")
        if classified:
            lines.append(f"applications (NetGPT's labels; EVE's app_proto in lower case), top {top}:")
            lines += [f"  {app:<24}{n:>8,}" for app, n in self.by_app.most_common(top)]
            lines.append(f"attacks (NetGPT):  {_counts(self.by_attack)}")
        return lines
