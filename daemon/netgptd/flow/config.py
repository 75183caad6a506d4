"""Flow-table settings: timeouts per protocol, capacity, first-packet buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

STATE_NEW = 0
STATE_ESTABLISHED = 1
STATE_CLOSED = 2
STATE_NAMES = ("new", "established", "closed")


@dataclass(frozen=True)
class Timeouts:
    """Seconds of idleness after which a flow ends, by state; ``active`` ends
    (and restarts) a flow that has lasted that long however busy it is.
    The ``emergency_*`` values apply while the table is full."""

    new: float
    established: float
    closed: float
    emergency_new: float
    emergency_established: float
    emergency_closed: float
    active: float = 1800.0

    def idle(self, state: int, emergency: bool) -> float:
        if emergency:
            return (self.emergency_new, self.emergency_established, self.emergency_closed)[state]
        return (self.new, self.established, self.closed)[state]


# Suricata's flow-timeouts defaults (suricata.yaml); Suricata has no active
# timeout, ours reports a long flow every 30 minutes.
SURICATA_DEFAULT = Timeouts(30, 300, 0, 10, 100, 0)
SURICATA_TCP = Timeouts(60, 600, 60, 5, 100, 10)
SURICATA_UDP = Timeouts(30, 300, 0, 10, 100, 0)
SURICATA_ICMP = Timeouts(30, 300, 0, 10, 100, 0)


def _default_timeouts() -> dict[str, Timeouts]:
    return {"default": SURICATA_DEFAULT, "tcp": SURICATA_TCP, "udp": SURICATA_UDP, "icmp": SURICATA_ICMP}


PROTO_KEYS = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}


@dataclass(frozen=True)
class FlowConfig:
    """``first_packets`` packets of each flow are kept, each cut to
    ``first_packet_bytes`` from the IP header on (0 turns buffering off).
    With ``buffer_payload_only``, after the flow's first packet only packets
    that carry payload are kept: a TCP handshake's empty segments would
    otherwise fill the buffer before the first byte of the application."""

    timeouts: dict[str, Timeouts] = field(default_factory=_default_timeouts)
    max_flows: int = 262144
    emergency_recovery: float = 0.7  # leave emergency mode below this share of max_flows
    emergency_evict: float = 0.01  # share of max_flows evicted at once when full
    first_packets: int = 8
    first_packet_bytes: int = 256
    buffer_payload_only: bool = False
    community_id_seed: int = 0
    max_fragment_trains: int = 4096

    def timeouts_for(self, proto: int) -> Timeouts:
        return self.timeouts.get(PROTO_KEYS.get(proto, "default"), self.timeouts["default"])
