"""EVE JSON events, shaped like Suricata's so existing tooling reads them."""

from __future__ import annotations

import copy
import json
import socket
from datetime import datetime, timezone
from importlib.resources import files
from typing import Any

import orjson

from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP
from netgptd.flow.config import STATE_NAMES
from netgptd.flow.logins import login_evidence
from netgptd.flow.table import (REASON_ACTIVE, REASON_EMERGENCY, REASON_REUSE, REASON_SHUTDOWN, REASON_TIMEOUT,
                                Flow)  # fmt: skip
from netgptd.signatures import GID, Signature

PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
               58: "IPv6-ICMP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP"}  # fmt: skip
TCP_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")
VERDICT_KEYS = ("app", "app_confidence", "attack", "attack_confidence", "model")


_SECONDS_TEXT: dict[int, str] = {}  # whole seconds -> "2024-05-01T12:00:00": a flow's times repeat a few seconds
_TEXT_SECONDS: dict[str, int] = {}  # the inverse, for event_seconds
_CACHED = 4096  # entries each cache holds at most (cleared when full)
_EVE_TIME_LEN = len("2024-05-01T12:00:00.123456+0000")


def _second_text(seconds: int) -> str:
    """``%Y-%m-%dT%H:%M:%S`` of whole seconds since the epoch (cached: formatted once per second seen)."""
    text = _SECONDS_TEXT.get(seconds)
    if text is None:
        if len(_SECONDS_TEXT) >= _CACHED:
            _SECONDS_TEXT.clear()
        text = _SECONDS_TEXT[seconds] = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text


def timestamp(ts_ns: int) -> str:
    """Suricata's timestamp format: 2024-05-01T12:00:00.123456+0000."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    try:
        return f"{_second_text(seconds)}.{ns // 1000:06d}+0000"
    except (ValueError, OverflowError, OSError):  # a corrupt capture's time, beyond years 1..9999
        when = datetime(9999, 12, 31, 23, 59, 59) if seconds > 0 else datetime(1970, 1, 1)
        return when.strftime("%Y-%m-%dT%H:%M:%S") + ".000000+0000"


def timestamp_at(seconds: float) -> str:
    """:func:`timestamp` of a time in seconds since the epoch (a window's edge)."""
    return timestamp(int(round(seconds * 1e9)))


def event_seconds(text: str) -> float:
    """Seconds since the epoch of an EVE timestamp (``2024-05-01T12:00:00.123456+0000``), the inverse of
    :func:`timestamp`: our own format read with a cached parse of its whole seconds, any other ISO 8601
    time with ``datetime.fromisoformat``.

    A timestamp without a zone is taken as UTC."""
    if len(text) == _EVE_TIME_LEN and text.endswith("+0000") and text[19] == "." and text[20:26].isdigit():
        seconds = _TEXT_SECONDS.get(text[:19])
        if seconds is None:
            if len(_TEXT_SECONDS) >= _CACHED:
                _TEXT_SECONDS.clear()
            when = datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc)
            seconds = _TEXT_SECONDS[text[:19]] = int(when.timestamp())
        return seconds + int(text[20:26]) / 1e6
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class FlowEvent(dict):  # type: ignore[type-arg]
    """A flow's EVE event (a plain dict to every reader and serialiser) that also carries its flow's start and
    end as seconds since the epoch, so that what reads them per flow (rules, trends) needs no text parse."""

    __slots__ = ("start_s", "end_s")


def flow_start_seconds(event: dict[str, Any]) -> float:
    """When a flow event's flow started, seconds since the epoch (ValueError if unreadable)."""
    if isinstance(event, FlowEvent):
        return event.start_s
    return event_seconds(event["flow"]["start"])


def flow_end_seconds(event: dict[str, Any]) -> float:
    """When a flow event's flow ended (its last packet), seconds since the epoch (ValueError if unreadable)."""
    if isinstance(event, FlowEvent):
        return event.end_s
    return event_seconds(event["flow"]["end"])


def ip_text(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6, address)


_HEX = tuple(f"{mask:02x}" for mask in range(256))
_FLAGS_SET = tuple(tuple(name for bit, name in enumerate(TCP_FLAG_NAMES) if mask & (1 << bit)) for mask in range(256))


def _tcp_object(flow: Flow) -> dict[str, Any]:
    both = flow.tcp_flags_toserver | flow.tcp_flags_toclient
    tcp: dict[str, Any] = {
        "tcp_flags": _HEX[both],
        "tcp_flags_ts": _HEX[flow.tcp_flags_toserver],
        "tcp_flags_tc": _HEX[flow.tcp_flags_toclient],
    }
    for name in _FLAGS_SET[both]:
        tcp[name] = True
    return tcp


# The model's applications (nDPI's names) as Suricata spells app_proto; an app without a Suricata
# parser keeps its own name, lower-cased.
SURICATA_APP_PROTO = {
    "DCE_RPC": "dcerpc", "DHCP": "dhcp", "DNP3": "dnp3", "DNS": "dns", "EthernetIP": "enip", "FTP": "ftp",
    "FTP_DATA": "ftp-data", "HTTP": "http", "HTTP2": "http2", "IMAP": "imap", "IPsec": "ike", "Kerberos": "krb5",
    "LDAP": "ldap", "LLMNR": "llmnr", "MDNS": "mdns", "MQTT": "mqtt", "Modbus": "modbus", "NFS": "nfs",
    "NTP": "ntp", "POP3": "pop3", "PostgreSQL": "pgsql", "QUIC": "quic", "RDP": "rdp", "SIP": "sip", "SMBv1": "smb",
    "SMBv23": "smb", "SMTP": "smtp", "SNMP": "snmp", "SSH": "ssh", "TFTP": "tftp", "TLS": "tls", "Telnet": "telnet",
    "VNC": "rfb", "WebSocket": "websocket",
}  # fmt: skip
UNKNOWN_APP = "unknown"
# Our flow end reasons as Suricata's flow.reason; an emergency eviction is Suricata's timeout with
# flow.emergency, an active timeout (Suricata has none) the record forced out while the flow goes on.
SURICATA_REASON = {REASON_TIMEOUT: "timeout", REASON_ACTIVE: "forced", REASON_EMERGENCY: "timeout",
                   REASON_REUSE: "tcp_reuse", REASON_SHUTDOWN: "shutdown"}  # fmt: skip
ALERT_ACTION = "allowed"  # Suricata's action for an alert of a sensor that blocks nothing


def app_proto(verdict: dict[str, Any] | None) -> str | None:
    """Suricata's ``app_proto`` of a verdict: None (left out) without one, ``failed`` when the model knew no app."""
    app = (verdict or {}).get("app")
    if not isinstance(app, str):
        return None
    if app == UNKNOWN_APP:
        return "failed"
    return SURICATA_APP_PROTO.get(app, app.lower())


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
    proto = app_proto(flow.verdict)
    if proto is not None:
        event["app_proto"] = proto
    event["community_id"] = flow.community_id
    return event


def _flow_object(flow: Flow) -> dict[str, Any]:
    """Suricata's ``flow`` object of an ended flow."""
    obj: dict[str, Any] = {
        "pkts_toserver": flow.pkts_toserver,
        "pkts_toclient": flow.pkts_toclient,
        "bytes_toserver": flow.bytes_toserver,
        "bytes_toclient": flow.bytes_toclient,
        "start": timestamp(flow.start_ns),
        "end": timestamp(flow.last_ns),
        "age": (flow.last_ns - flow.start_ns) // 1_000_000_000,
    }
    if flow.end_reason == REASON_EMERGENCY:
        obj["emergency"] = True
    obj["state"] = STATE_NAMES[flow.state]
    obj["reason"] = SURICATA_REASON.get(flow.end_reason, "unknown")
    obj["alerted"] = flow.alerted
    return obj


def flow_event(flow: Flow) -> FlowEvent:
    """The ``event_type: flow`` record of an ended flow.

    ``timestamp`` is the flow's start, as in Suricata. The ``netgpt`` object
    holds the model's verdict (``flow.verdict``), all null when no model ran,
    and ``logins`` where the flow showed a login (``netgptd.flow.logins``).
    """
    event = FlowEvent(_flow_header(flow, "flow", flow.start_ns))
    event.start_s, event.end_s = flow.start_ns / 1e9, flow.last_ns / 1e9
    verdict = flow.verdict or {}
    event["flow"] = _flow_object(flow)
    if flow.proto == PROTO_TCP:
        event["tcp"] = _tcp_object(flow)
    event["netgpt"] = {key: verdict.get(key) for key in VERDICT_KEYS}
    logins = login_evidence(flow)
    if logins is not None:
        event["netgpt"]["logins"] = logins
    return event


def alert_object(signature: Signature) -> dict[str, Any]:
    """Suricata's ``alert`` object for one of our signatures."""
    return {
        "action": ALERT_ACTION,
        "gid": GID,
        "signature_id": signature.sid,
        "rev": signature.rev,
        "signature": signature.message,
        "category": signature.category,
        "severity": signature.severity,
    }


def alert_event(flow: Flow, ts_ns: int, signature: Signature, netgpt: dict[str, Any]) -> dict[str, Any]:
    """An ``event_type: alert`` about a flow; ``netgpt`` says what raised it (``detector``, ``confidence``, ...)."""
    event = _flow_header(flow, "alert", ts_ns)
    event["alert"] = alert_object(signature)
    event["netgpt"] = netgpt
    return event


def alert_detector(event: dict[str, Any]) -> str:
    """What raised an alert event: ``model`` or the rule's name ("" when not said)."""
    detector = (event.get("netgpt") or {}).get("detector")
    return detector if isinstance(detector, str) else ""


def suricata_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Suricata's ``stats`` object: the counters of ours that mean what one of Suricata's means."""
    drops = stats.get("capture_drops") or {}
    sections: dict[str, dict[str, Any]] = {
        "capture": {"kernel_drops": drops.get("kernel"), "kernel_ifdrops": drops.get("interface")},
        "decoder": {"pkts": stats.get("packets"), "bytes": stats.get("bytes"),
                    "invalid": sum((stats.get("decode_errors") or {}).values())},
        "flow": {"total": stats.get("flows"), "active": stats.get("active_flows"),
                 "emerg_mode_entered": stats.get("emergency_entered")},
        "detect": {"alert": stats.get("alerts")},
    }  # fmt: skip
    out: dict[str, Any] = {}
    if isinstance(stats.get("uptime"), (int, float)):
        out["uptime"] = int(stats["uptime"])
    for name, counters in sections.items():
        kept = {k: int(v) for k, v in counters.items() if isinstance(v, (int, float))}
        if kept:
            out[name] = kept
    return out


def stats_event(ts_ns: int, stats: dict[str, Any]) -> dict[str, Any]:
    """The ``stats`` event: Suricata's counters in ``stats``, every counter of ours in ``netgpt.stats``."""
    return {"timestamp": timestamp(ts_ns), "event_type": "stats", "stats": suricata_stats(stats),
            "netgpt": {"stats": stats}}  # fmt: skip


def stats_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """Our counters in a stats event (``netgpt.stats``), None when it has none."""
    stats = (event.get("netgpt") or {}).get("stats")
    return stats if isinstance(stats, dict) else None


def with_host(event: dict[str, Any], host: str) -> dict[str, Any]:
    """The event with the sensor's name in ``host``, as Suricata writes its sensor-name (kept if set)."""
    if host and "host" not in event:
        event["host"] = host
    return event


def extension_schema() -> dict[str, Any]:
    """Our documented extension of Suricata's EVE schema (``eve_schema.json``): the top-level objects we add."""
    return json.loads(files("netgptd").joinpath("eve_schema.json").read_text())


def extended_schema(suricata: dict[str, Any]) -> dict[str, Any]:
    """Suricata's EVE JSON schema with our extension's top-level objects added (``intent``: the intent schema)."""
    ours = extension_schema()
    merged = copy.deepcopy(suricata)
    clash = set(ours["properties"]) & set(merged["properties"])
    if clash:
        raise ValueError(f"eve_schema.json redefines Suricata's own fields: {sorted(clash)}")
    merged["properties"].update(ours["properties"])
    intent = json.loads(files("netgptd").joinpath("intent/schema.json").read_text())
    merged.setdefault("$defs", {})["netgpt_intent"] = {k: v for k, v in intent.items() if k not in ("$schema", "$id")}
    return merged


def dumps(event: dict[str, Any]) -> bytes:
    """An event as compact UTF-8 JSON: an EVE line (without its newline), an MQTT payload.

    orjson writes what ``json.dumps(event, separators=(",", ":"))`` writes, three times as fast, except that
    text stays UTF-8 (not ``\\u`` escapes) and a NaN is null; what it cannot write (an integer beyond
    64 bits) goes through ``json``."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(event, separators=(",", ":")).encode()

