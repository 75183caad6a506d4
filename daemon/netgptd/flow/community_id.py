"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

A pure function over the flow tuple, checked against the reference
``communityid`` package in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP

PORT_PROTOS = frozenset((PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP))

# ICMP request/response types paired as "ports" (mirrors Zeek and the spec).
_ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMPV6_PAIRS = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
    135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip

_pack_ports = struct.Struct("!HH").pack


def community_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 of a flow; addresses are packed (4 or 16 bytes).

    For ICMP and ICMPv6, ``sport`` and ``dport`` are the message type and code.
    """
    one_way = False
    if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        pairs = _ICMP_PAIRS if proto == PROTO_ICMP else _ICMPV6_PAIRS
        paired = pairs.get(sport)
        if paired is None:
            one_way = True  # type/code used as they are, no reordering
        else:
            dport = paired
    if not one_way and (src > dst or (src == dst and sport > dport)):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + bytes((proto, 0))
    if proto in PORT_PROTOS:
        data += _pack_ports(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
