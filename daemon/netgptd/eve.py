"""EVE JSON events, shaped like Suricata's so existing tooling reads them."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from typing import Any, TextIO

from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP
from netgptd.flow.config import STATE_NAMES
from netgptd.flow.table import Flow

PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
               58: "IPv6-ICMP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP"}  # fmt: skip
TCP_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")
VERDICT_KEYS = ("app", "app_confidence", "attack", "attack_confidence", "model")


def timestamp(ts_ns: int) -> str:
    """Suricata's timestamp format: 2024-05-01T12:00:00.123456+0000."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    try:
        when = datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):  # a corrupt capture's time, beyond years 1..9999
        when, ns = (datetime(9999, 12, 31, 23, 59, 59) if seconds > 0 else datetime(1970, 1, 1)), 0
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}+0000"


def timestamp_at(seconds: float) -> str:
    """:func:`timestamp` of a time in seconds since the epoch (a window's edge)."""
    return timestamp(int(round(seconds * 1e9)))


def event_seconds(text: str) -> float:
    """Seconds since the epoch of an EVE timestamp (``2024-05-01T12:00:00.123456+0000``), the inverse of
    :func:`timestamp` (a C parse: rules and trends read one per flow).

    A timestamp without a zone is taken as UTC."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def ip_text(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6, address)


def _tcp_object(flow: Flow) -> dict[str, Any]:
    both = flow.tcp_flags_toserver | flow.tcp_flags_toclient
    tcp: dict[str, Any] = {
        "tcp_flags": f"{both:02x}",
        "tcp_flags_ts": f"{flow.tcp_flags_toserver:02x}",
        "tcp_flags_tc": f"{flow.tcp_flags_toclient:02x}",
    }
    for bit, name in enumerate(TCP_FLAG_NAMES):
        if both & (1 << bit):
            tcp[name] = True
    return tcp


def _flow_header(flow: Flow, event_type: str, ts_ns: int) -> dict[str, Any]:
    """The fields every flow-related event starts with, Suricata's order."""
    event: dict[str, Any] = {
        "timestamp": timestamp(ts_ns),
        "flow_id": flow.flow_id,
        "event_type": event_type,
        "src_ip": ip_text(flow.client_ip),
    }
    icmp = flow.proto in (PROTO_ICMP, PROTO_ICMPV6)
    if not icmp:
        event["src_port"] = flow.client_port
    event["dest_ip"] = ip_text(flow.server_ip)
    if not icmp:
        event["dest_port"] = flow.server_port
    event["proto"] = PROTO_NAMES.get(flow.proto, str(flow.proto))
    if icmp:
        event["icmp_type"], event["icmp_code"] = flow.client_port, flow.server_port
    app = (flow.verdict or {}).get("app")
    event["app_proto"] = app.lower() if isinstance(app, str) else None
    event["community_id"] = flow.community_id
    return event


def flow_event(flow: Flow) -> dict[str, Any]:
    """The ``event_type: flow`` record of an ended flow.

    ``timestamp`` is the flow's start, as in Suricata. The ``netgpt`` object
    holds the model's verdict (``flow.verdict``), all null when no model ran.
    """
    event = _flow_header(flow, "flow", flow.start_ns)
    verdict = flow.verdict or {}
    event["flow"] = {
        "pkts_toserver": flow.pkts_toserver,
        "pkts_toclient": flow.pkts_toclient,
        "bytes_toserver": flow.bytes_toserver,
        "bytes_toclient": flow.bytes_toclient,
        "start": timestamp(flow.start_ns),
        "end": timestamp(flow.last_ns),
        "age": (flow.last_ns - flow.start_ns) // 1_000_000_000,
        "state": STATE_NAMES[flow.state],
        "reason": flow.end_reason,
    }
    if flow.proto == PROTO_TCP:
        event["tcp"] = _tcp_object(flow)
    event["netgpt"] = {key: verdict.get(key) for key in VERDICT_KEYS}
    return event


def alert_event(flow: Flow, ts_ns: int, signature: str, category: str, severity: int, confidence: float,
                source: str) -> dict[str, Any]:  # fmt: skip
    """An ``event_type: alert`` about a flow; ``source`` is ``model`` or the rule's name."""
    event = _flow_header(flow, "alert", ts_ns)
    event["alert"] = {
        "signature": signature,
        "category": category,
        "severity": severity,
        "confidence": round(confidence, 4),
        "source": source,
    }
    return event


def stats_event(ts_ns: int, stats: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": timestamp(ts_ns), "event_type": "stats", "stats": stats}


def dumps(event: dict[str, Any]) -> str:
    """An event as compact JSON: an EVE line, an MQTT payload."""
    return json.dumps(event, separators=(",", ":"))


class EveWriter:
    """Writes one compact JSON object per line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.events = 0

    def write(self, event: dict[str, Any]) -> None:
        self.stream.write(dumps(event) + "\n")
        self.events += 1
