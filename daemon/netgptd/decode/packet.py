"""What the decoder makes of a frame: the fields flows and the tokenizer need."""

from __future__ import annotations

from typing import NamedTuple

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ICMPV6 = 58
PROTO_SCTP = 132

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

NO_FRAGMENT = -1


class Packet(NamedTuple):
    """A decoded IP packet; offsets index into ``data`` (the whole frame).

    For tunnelled traffic (GRE, VXLAN, GTP-U) the fields describe the
    innermost IP packet, as Suricata does. ``sport``/``dport`` carry ICMP
    type/code for ICMP and 0 where a protocol has no ports. A non-first IP
    fragment has ``l4_off == payload_off == -1`` and no ports; the flow table
    attributes it through ``frag_id``.
    """

    ts_ns: int
    ip_version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    tcp_flags: int
    data: bytes
    l3_off: int
    l4_off: int
    payload_off: int
    end: int  # end of the IP packet within data (Ethernet padding excluded)
    wire_len: int
    frag_id: int  # NO_FRAGMENT, or the IPv4/IPv6 fragment identification
    frag_offset: int
    frag_more: bool

    @property
    def payload_len(self) -> int:
        return self.end - self.payload_off if self.payload_off >= 0 else 0


class DecodeError(Exception):
    """A frame that is malformed or truncated; ``reason`` is a short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotIP(Exception):
    """A well-formed frame that carries no IP (ARP, STP, LLDP...): skipped, not an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
