"""Rule detectors for multi-flow attacks, over flow records (pure, time from the flows).

A SYN flood or a port sweep is not in any single flow: it is a rate of
flows. These rules count flow records in a sliding window and raise one
alert per offender and window (then stay quiet for a cool-down):

- ``syn_flood``: many half-open TCP flows (the client's SYN got no
  SYN-ACK, or got a RST) to one victim address;
- ``synack_reflection``: SYN-ACKs from many servers to one address that
  sent no SYN (a reflection attack's victim);
- ``udp_flood``: unanswered UDP from many sources to one address;
- ``udp_reflection``: UDP replies from many servers to one address that
  asked nothing (an amplification's victim: ``netgptd.flow.direction``
  makes the reflector, a DNS answer or a service port's sender, the
  flow's server, so the victim is the client that sent nothing);
- ``port_sweep``: one source reaching many distinct ports of one victim
  (TCP or UDP), most of them unanswered or refused;
- ``host_sweep``: one source reaching the same port on many hosts;
- ``bruteforce``: failed logins from one client to one server's login
  service (``netgpt.logins`` of the flow records, ``netgptd.flow.logins``)
  over a longer window: the server's failure replies in cleartext protocols
  (FTP, SMTP, POP3, IMAP, HTTP with an Authorization header, Telnet), short
  sessions to encrypted login services (SSH, RDP, TLS-wrapped mail and FTP).
  A plain web request is no login and never counts.

A spoofed-source flood brings a new key with nearly every flow, so every
table is bounded (``netgptd.rule_windows``): at most ``max_keys`` windows per
rule and cool-downs, and each window exact up to twice its rule's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netgptd.eve import alert_object, flow_start_seconds, timestamp
from netgptd.rule_windows import Cooldowns, WindowShape, WindowTable
from netgptd.signatures import RULE_SIGNATURES

ALERT_FLOW_FIELDS = ("src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto", "community_id", "host")


@dataclass(frozen=True)
class RuleSettings:
    window_s: float = 10.0
    cooldown_s: float = 60.0
    syn_flood_flows: int = 200
    udp_flood_sources: int = 200
    port_sweep_ports: int = 25
    host_sweep_hosts: int = 25
    bruteforce_window_s: float = 120.0  # the bruteforce rule's window: a slow guesser tries a login every few seconds
    bruteforce_failures: int = 10  # failed logins from one client to one server's cleartext login service
    bruteforce_connections: int = 20  # short sessions from one client to one server's encrypted login service
    max_keys: int = 10_000  # windows per rule, and cool-downs, kept at most (a spoofed flood brings a key per flow)


RULES = RULE_SIGNATURES  # name: its signature (id, category, severity), in netgptd.signatures


def _flags(event: dict[str, Any]) -> tuple[int, int]:
    """A TCP flow event's flags: the client's, the server's."""
    tcp = event.get("tcp", {})
    return int(tcp.get("tcp_flags_ts", "0"), 16), int(tcp.get("tcp_flags_tc", "0"), 16)


def _half_open(client_flags: int, server_flags: int) -> bool:
    answered = server_flags & 0x12 == 0x12  # SYN-ACK from the server
    return bool(client_flags & 0x02) and (not answered or bool(server_flags & 0x04))


def _reflected_synack(client_flags: int, server_flags: int) -> bool:
    return client_flags == 0 and server_flags & 0x12 == 0x12


def one_sided(event: dict[str, Any]) -> bool:
    """A flow event that got no answer: a half-open TCP flow, a lone SYN-ACK (a reflection's), UDP one way only
    (unanswered, or a reflection's replies)."""
    if event["proto"] == "TCP":
        client_flags, server_flags = _flags(event)
        return _half_open(client_flags, server_flags) or _reflected_synack(client_flags, server_flags)
    return event["flow"]["pkts_toclient"] == 0 or event["flow"]["pkts_toserver"] == 0


class FlowRateRules:
    """Feed flow events with ``observe``; it returns the alert events it raises."""

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()
        self._windows: dict[str, WindowTable] = {}  # by rule
        self._cooldowns = Cooldowns(self.settings.max_keys)
        s = self.settings
        self._spans = {"bruteforce": s.bruteforce_window_s}  # each rule's window, where not ``window_s``
        self._exact = {"bruteforce": max(s.bruteforce_failures, s.bruteforce_connections)}  # where two thresholds

    def observe(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("event_type") != "flow" or event.get("proto") not in ("TCP", "UDP"):
            return []
        when = flow_start_seconds(event)
        src, dst, port = event["src_ip"], event["dest_ip"], event["dest_port"]
        alerts = []
        s = self.settings
        tcp = event["proto"] == "TCP"
        if tcp:
            client_flags, server_flags = _flags(event)
            no_answer = _half_open(client_flags, server_flags)
            if no_answer:
                alerts += self._count("syn_flood", (dst,), when, [(src, event["src_port"])], s.syn_flood_flows, event)
            if _reflected_synack(client_flags, server_flags):  # the victim is the "client" the SYN-ACKs go to
                alerts += self._count("synack_reflection", (src,), when, [(dst, port)], s.syn_flood_flows, event)
        else:
            no_answer = event["flow"]["pkts_toclient"] == 0
            if no_answer:
                alerts += self._count("udp_flood", (dst,), when, [(src, event["src_port"])], s.udp_flood_sources,
                                      event)  # fmt: skip
            elif event["flow"]["pkts_toserver"] == 0:  # the victim is the "client" the replies go to
                alerts += self._count("udp_reflection", (src,), when, [(dst, port)], s.udp_flood_sources, event)
        if no_answer:
            alerts += self._count("port_sweep", (src, dst, event["proto"]), when, [port], s.port_sweep_ports, event)
            alerts += self._count("host_sweep", (src, port, event["proto"]), when, [dst], s.host_sweep_hosts, event)
        logins = (event.get("netgpt") or {}).get("logins")
        if tcp and isinstance(logins, dict) and isinstance(logins.get("service"), str):
            alerts += self._bruteforce(event, logins, when)
        return alerts

    def _bruteforce(self, event: dict[str, Any], logins: dict[str, Any], when: float) -> list[dict[str, Any]]:
        """Count a flow's failed logins (each a value of its own), or the flow itself if it was a short session
        to an encrypted login service, per client, server and service."""
        s = self.settings
        if logins.get("short_session") is True:
            values: list[object] = [event["flow_id"]]
            threshold = s.bruteforce_connections
        else:
            threshold = s.bruteforce_failures
            failed = logins.get("failed")
            count = min(failed, 2 * threshold) if isinstance(failed, int) else 0  # what the window keeps exactly
            values = [(event["flow_id"], i) for i in range(count)]
        if not values:
            return []
        key = (event["src_ip"], event["dest_ip"], logins["service"])
        return self._count("bruteforce", key, when, values, threshold, event, {"service": logins["service"]})

    def _count(self, rule: str, key: tuple, when: float, values: list[object], threshold: int,
               event: dict[str, Any], logins: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        window = self._table(rule, threshold).window(key, when)
        for value in values:
            window.add(when, value)
        if not window.reached(threshold) or self._cooldowns.quiet((rule, key), when):
            return []
        self._cooldowns.start((rule, key), when + self.settings.cooldown_s, when)
        distinct = window.distinct()
        confidence = round(min(1.0, distinct / (2 * threshold)), 4)  # 0.5 at the threshold
        return [self._alert(rule, when, event, confidence, distinct, logins)]

    def _alert(self, rule: str, when: float, event: dict[str, Any], confidence: float, flows: int,
               logins: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
        """The alert event of ``rule``, about the flow record that crossed its threshold."""
        # To the microsecond EVE writes, rounded: a start read back from EVE text differs from the number by
        # a float's last bits, which truncation could turn into a different microsecond.
        alert: dict[str, Any] = {"timestamp": timestamp(round(when * 1e6) * 1000), "flow_id": event["flow_id"],
                                 "event_type": "alert"}  # fmt: skip
        alert.update({k: event[k] for k in ALERT_FLOW_FIELDS if k in event})
        alert["alert"] = alert_object(RULES[rule])
        alert["netgpt"] = {"detector": rule, "confidence": confidence, "flows": flows,
                           "window_s": self._spans.get(rule, self.settings.window_s)}  # fmt: skip
        if logins is not None:
            alert["netgpt"]["logins"] = logins
        return alert

    def _table(self, rule: str, threshold: int) -> WindowTable:
        """The rule's windows; exact up to twice its (largest) threshold, where an alert's confidence reaches 1."""
        table = self._windows.get(rule)
        if table is None:
            span = self._spans.get(rule, self.settings.window_s)
            shape = WindowShape(span, 2 * max(1, self._exact.get(rule, threshold)))
            table = self._windows[rule] = WindowTable(shape, self.settings.max_keys)
        return table

    def status(self) -> dict[str, Any]:
        """How full the bounded tables are and what they dropped, by rule (for ``netgpt_status``)."""
        tables = [(rule, self._windows.get(rule)) for rule in RULES]
        return {
            "tracked": {rule: 0 if t is None else len(t) for rule, t in tables},
            "evicted": {rule: 0 if t is None else t.evicted for rule, t in tables},
            "sketched": {rule: 0 if t is None else t.sketched_total() for rule, t in tables},
            "cooldowns": len(self._cooldowns),
            "cooldowns_evicted": self._cooldowns.evicted,
        }
