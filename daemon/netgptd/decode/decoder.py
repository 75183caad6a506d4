"""Frame decoder: pure functions from a captured frame to a ``Packet``.

Link layers: Ethernet (802.1Q/QinQ, MPLS, PPPoE), Linux SLL and SLL2, raw
IPv4/IPv6, BSD loopback/null, PPP, Cisco HDLC, 802.11 data (plain or
radiotap). Network: IPv4 (options, fragments), IPv6 (extension headers,
fragments). Transport: TCP, UDP, ICMP, ICMPv6, SCTP. Tunnels decoded to the
inner packet: GRE (v0, and PPTP's v1), VXLAN, GTP-U, IP-in-IP and
IPv6-in-IPv4; a tunnel whose inner packet does not decode is
kept as the outer flow, so nothing valid is lost.

Malformed or truncated input raises ``DecodeError`` with a short reason; a
frame that carries no IP raises ``NotIP``. Nothing here does I/O.
"""

from __future__ import annotations

import struct

from netgptd.capture.records import PacketRecord
from netgptd.decode.packet import (
    NO_FRAGMENT,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    DecodeError,
    NotIP,
    Packet,
)

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_BSD = 12
LINKTYPE_RAW_BSD14 = 14
LINKTYPE_PPP_HDLC = 50
LINKTYPE_RAW = 101
LINKTYPE_CHDLC = 104
LINKTYPE_IEEE802_11 = 105
LINKTYPE_RADIOTAP = 127
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD
ETH_MPLS = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_QINQ = 0x88A8
ETH_LLDP = 0x88CC
ETH_QINQ_OLD = 0x9100
ETH_TEB = 0x6558  # transparent Ethernet bridging (GRE)
GRE_PPP = 0x880B

PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

UDP_VXLAN = 4789
UDP_GTPU = 2152

PROTO_IPIP = 4
PROTO_IPV6_IN_IP = 41
IPV6_EXT_SIMPLE = frozenset((0, 43, 60, 135, 139, 140))  # (len+1)*8 headers
IPV6_FRAGMENT = 44
IPV6_AH = 51
MAX_IPV6_EXT = 8
MAX_TUNNEL_DEPTH = 3

_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, NetBSD/OpenBSD, FreeBSD, macOS

_u16 = struct.Struct("!H").unpack_from
_u16x2 = struct.Struct("!HH").unpack_from
# version/IHL, total length, ID, flags/fragment offset, protocol, addresses
_ipv4_header = struct.Struct("!BxHHHxBxx4s4s").unpack_from
_tcp_header = struct.Struct("!HH8xBB").unpack_from  # ports, data offset, flags
_u32 = struct.Struct("!I").unpack_from
_new_packet = tuple.__new__


def decode(record: PacketRecord) -> Packet:
    """Decode one captured frame, or raise DecodeError / NotIP."""
    linktype = record.linktype
    data = record.data
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet(record.ts_ns, data, 0, record.orig_len, 0)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW_BSD, LINKTYPE_RAW_BSD14):
        return _ip_by_version(record.ts_ns, data, 0, record.orig_len, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            raise DecodeError("sll_truncated")
        return _ethertype(record.ts_ns, data, 16, _u16(data, 14)[0], record.orig_len, 0)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            raise DecodeError("sll2_truncated")
        return _ethertype(record.ts_ns, data, 20, _u16(data, 0)[0], record.orig_len, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return _loopback(record.ts_ns, data, record.orig_len)
    if linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
        return _ppp(record.ts_ns, data, 0, record.orig_len, 0)
    if linktype == LINKTYPE_CHDLC:
        if len(data) < 4:
            raise DecodeError("chdlc_truncated")
        return _ethertype(record.ts_ns, data, 4, _u16(data, 2)[0], record.orig_len, 0)
    if linktype == LINKTYPE_IEEE802_11:
        return _ieee80211(record.ts_ns, data, 0, record.orig_len, 0)
    if linktype == LINKTYPE_RADIOTAP:
        return _radiotap(record.ts_ns, data, record.orig_len)
    raise NotIP(f"linktype_{linktype}")


def _loopback(ts: int, data: bytes, wire_len: int) -> Packet:
    if len(data) < 4:
        raise DecodeError("loopback_truncated")
    # The family is in the capturing host's byte order: accept either.
    for family in (int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")):
        if family == _AF_INET:
            return _ipv4(ts, data, 4, wire_len, 0)
        if family in _AF_INET6:
            return _ipv6(ts, data, 4, wire_len, 0)
    raise NotIP("loopback_family")


def _ethernet(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    if len(data) - off < 14:
        raise DecodeError("ethernet_truncated")
    ethertype = (data[off + 12] << 8) | data[off + 13]
    if ethertype == ETH_IPV4:  # the common case, without a further call
        return _ipv4(ts, data, off + 14, wire_len, depth)
    return _ethertype(ts, data, off + 14, ethertype, wire_len, depth)


def _ethertype(ts: int, data: bytes, off: int, ethertype: int, wire_len: int, depth: int) -> Packet:
    n = len(data)
    while ethertype in (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD):
        if n - off < 4:
            raise DecodeError("vlan_truncated")
        ethertype = _u16(data, off + 2)[0]
        off += 4
    if ethertype == ETH_IPV4:
        return _ipv4(ts, data, off, wire_len, depth)
    if ethertype == ETH_IPV6:
        return _ipv6(ts, data, off, wire_len, depth)
    if ethertype in (ETH_MPLS, ETH_MPLS_MC):
        return _mpls(ts, data, off, wire_len, depth)
    if ethertype == ETH_PPPOE_SESSION:
        if n - off < 6:
            raise DecodeError("pppoe_truncated")
        return _ppp(ts, data, off + 6, wire_len, depth)
    if ethertype == ETH_ARP:
        raise NotIP("arp")
    if ethertype == ETH_LLDP:
        raise NotIP("lldp")
    if ethertype <= 1500:
        raise NotIP("llc")
    raise NotIP("other_ethertype")


def _ieee80211(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    """An 802.11 data frame carrying LLC/SNAP."""
    if len(data) - off < 24:
        raise DecodeError("ieee80211_truncated")
    frame_control, flags = data[off], data[off + 1]
    if (frame_control >> 2) & 0x03 != 2:
        raise NotIP("ieee80211_management")
    if flags & 0x40:
        raise NotIP("ieee80211_protected")
    pos = off + 24
    if flags & 0x03 == 0x03:
        pos += 6  # four addresses (WDS)
    if frame_control & 0x80:
        pos += 2  # QoS control
    if len(data) - pos < 8 or data[pos] != 0xAA or data[pos + 1] != 0xAA:
        raise NotIP("llc")
    return _ethertype(ts, data, pos + 8, _u16(data, pos + 6)[0], wire_len, depth)


def _radiotap(ts: int, data: bytes, wire_len: int) -> Packet:
    if len(data) < 4:
        raise DecodeError("radiotap_truncated")
    return _ieee80211(ts, data, int.from_bytes(data[2:4], "little"), wire_len, 0)


def _mpls(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    n = len(data)
    while True:
        if n - off < 4:
            raise DecodeError("mpls_truncated")
        bottom = data[off + 2] & 1
        off += 4
        if bottom:
            break
    # No payload type in MPLS: guess from the IP version nibble.
    return _ip_by_version(ts, data, off, wire_len, depth)


def _ppp(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    n = len(data)
    if n - off >= 2 and data[off] == 0xFF and data[off + 1] == 0x03:
        off += 2  # HDLC address and control
    if n - off < 1:
        raise DecodeError("ppp_truncated")
    if data[off] & 1:  # compressed one-byte protocol field
        protocol, off = data[off], off + 1
    else:
        if n - off < 2:
            raise DecodeError("ppp_truncated")
        protocol, off = _u16(data, off)[0], off + 2
    if protocol == PPP_IPV4:
        return _ipv4(ts, data, off, wire_len, depth)
    if protocol == PPP_IPV6:
        return _ipv6(ts, data, off, wire_len, depth)
    raise NotIP("ppp_control")


def _ip_by_version(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    if len(data) <= off:
        raise DecodeError("ip_truncated")
    version = data[off] >> 4
    if version == 4:
        return _ipv4(ts, data, off, wire_len, depth)
    if version == 6:
        return _ipv6(ts, data, off, wire_len, depth)
    raise DecodeError("ip_bad_version")


def _ipv4(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    n = len(data)
    if n - off < 20:
        raise DecodeError("ipv4_truncated")
    vihl, total, ident, frag_word, proto, src, dst = _ipv4_header(data, off)
    if vihl >> 4 != 4:
        raise DecodeError("ipv4_bad_version")
    hlen = (vihl & 0x0F) << 2
    if hlen < 20:
        raise DecodeError("ipv4_bad_header_length")
    if n - off < hlen:
        raise DecodeError("ipv4_truncated")
    if total < hlen:
        raise DecodeError("ipv4_bad_total_length")
    end = off + total
    if end > n:
        end = n  # cut by the snap length: keep what was captured
    frag_offset = (frag_word & 0x1FFF) << 3
    frag_more = bool(frag_word & 0x2000)
    frag_id = ident if (frag_offset or frag_more) else NO_FRAGMENT
    if frag_offset:
        return _new_packet(
            Packet,
            (ts, 4, src, dst, proto, 0, 0, 0, data, off, -1, -1, end, wire_len, frag_id, frag_offset, frag_more),
        )
    return _transport(ts, 4, src, dst, proto, data, off, off + hlen, end, wire_len, frag_id, frag_more, depth)


def _ipv6(ts: int, data: bytes, off: int, wire_len: int, depth: int) -> Packet:
    n = len(data)
    if n - off < 40:
        raise DecodeError("ipv6_truncated")
    if data[off] >> 4 != 6:
        raise DecodeError("ipv6_bad_version")
    payload_len = _u16(data, off + 4)[0]
    proto = data[off + 6]
    end = off + 40 + payload_len if payload_len else n  # 0: jumbogram
    if end > n:
        end = n
    src = data[off + 8 : off + 24]
    dst = data[off + 24 : off + 40]
    pos = off + 40
    frag_id, frag_offset, frag_more = NO_FRAGMENT, 0, False
    for _ in range(MAX_IPV6_EXT):
        if proto in IPV6_EXT_SIMPLE:
            if end - pos < 8:
                raise DecodeError("ipv6_ext_truncated")
            proto, pos = data[pos], pos + ((data[pos + 1] + 1) << 3)
        elif proto == IPV6_AH:
            if end - pos < 8:
                raise DecodeError("ipv6_ext_truncated")
            proto, pos = data[pos], pos + ((data[pos + 1] + 2) << 2)
        elif proto == IPV6_FRAGMENT:
            if end - pos < 8:
                raise DecodeError("ipv6_ext_truncated")
            word = _u16(data, pos + 2)[0]
            frag_offset, frag_more = word & 0xFFF8, bool(word & 1)
            if frag_offset or frag_more:  # else an atomic fragment: a whole packet
                frag_id = _u32(data, pos + 4)[0]
            proto, pos = data[pos], pos + 8
            if frag_offset:
                break  # a later fragment: what follows is data, not headers
        else:
            break
    else:
        raise DecodeError("ipv6_too_many_ext")
    if pos > end:
        raise DecodeError("ipv6_ext_truncated")
    if frag_offset:
        return _new_packet(
            Packet,
            (ts, 6, src, dst, proto, 0, 0, 0, data, off, -1, -1, end, wire_len, frag_id, frag_offset, frag_more),
        )
    return _transport(ts, 6, src, dst, proto, data, off, pos, end, wire_len, frag_id, frag_more, depth)


def _transport(
    ts: int,
    version: int,
    src: bytes,
    dst: bytes,
    proto: int,
    data: bytes,
    l3: int,
    l4: int,
    end: int,
    wire_len: int,
    frag_id: int,
    frag_more: bool,
    depth: int,
) -> Packet:
    avail = end - l4
    flags = 0
    if proto == PROTO_TCP:
        if avail < 20:
            raise DecodeError("tcp_truncated")
        sport, dport, doff, flags = _tcp_header(data, l4)
        doff = (doff >> 4) << 2
        if doff < 20:
            raise DecodeError("tcp_bad_header_length")
        if doff > avail:
            raise DecodeError("tcp_truncated")
        payload = l4 + doff
    elif proto == PROTO_UDP:
        if avail < 8:
            raise DecodeError("udp_truncated")
        sport, dport = _u16x2(data, l4)
        payload = l4 + 8
        if depth < MAX_TUNNEL_DEPTH and frag_id == NO_FRAGMENT:
            inner = _udp_tunnel(ts, data, payload, end, sport, dport, wire_len, depth + 1)
            if inner is not None:
                return inner
    elif proto == PROTO_SCTP:
        if avail < 12:
            raise DecodeError("sctp_truncated")
        sport, dport = _u16x2(data, l4)
        payload = l4 + 12
    elif proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        if avail < 4:
            raise DecodeError("icmp_truncated")
        sport, dport = data[l4], data[l4 + 1]
        payload = l4 + 4
    else:
        if depth < MAX_TUNNEL_DEPTH and frag_id == NO_FRAGMENT:
            inner = _ip_tunnel(ts, data, l4, end, proto, wire_len, depth + 1)
            if inner is not None:
                return inner
        sport = dport = 0
        payload = l4
    return _new_packet(
        Packet,
        (ts, version, src, dst, proto, sport, dport, flags, data, l3, l4, payload, end, wire_len, frag_id, 0, frag_more),
    )


def _udp_tunnel(
    ts: int, data: bytes, off: int, end: int, sport: int, dport: int, wire_len: int, depth: int
) -> Packet | None:
    """The inner packet of VXLAN or GTP-U, or None to keep the outer UDP flow."""
    try:
        if dport == UDP_VXLAN and end - off >= 8 and data[off] & 0x08:
            return _ethernet(ts, data[:end], off + 8, wire_len, depth)
        if (dport == UDP_GTPU or sport == UDP_GTPU) and end - off >= 8:
            flags, msg_type = data[off], data[off + 1]
            if flags >> 5 != 1 or msg_type != 0xFF:  # GTPv1 G-PDU only
                return None
            pos = off + 8
            if flags & 0x07:  # sequence, N-PDU and next-extension fields
                pos += 4
                next_ext = data[pos - 1] if pos <= end else 0
                while next_ext and pos < end:
                    ext_len = data[pos] << 2
                    if ext_len == 0:
                        return None
                    pos += ext_len
                    next_ext = data[pos - 1] if pos <= end else 0
            return _ip_by_version(ts, data[:end], pos, wire_len, depth)
    except (DecodeError, NotIP):
        return None
    return None


def _ip_tunnel(ts: int, data: bytes, off: int, end: int, proto: int, wire_len: int, depth: int) -> Packet | None:
    """The inner packet of GRE or IP-in-IP, or None to keep the outer flow."""
    try:
        if proto == PROTO_IPIP:
            return _ipv4(ts, data[:end], off, wire_len, depth)
        if proto == PROTO_IPV6_IN_IP:
            return _ipv6(ts, data[:end], off, wire_len, depth)
        if proto == PROTO_GRE and end - off >= 4:
            flags_version, ethertype = _u16x2(data, off)
            version = flags_version & 0x07
            if version == 1 and ethertype == GRE_PPP:  # PPTP's enhanced GRE: key always present
                pos = off + 8 + 4 * (bool(flags_version & 0x1000) + bool(flags_version & 0x0080))
                return _ppp(ts, data[:end], pos, wire_len, depth)
            if version != 0:
                return None
            pos = off + 4 + 4 * (bool(flags_version & 0x8000) + bool(flags_version & 0x2000) + bool(flags_version & 0x1000))
            if ethertype == ETH_TEB:
                return _ethernet(ts, data[:end], pos, wire_len, depth)
            if ethertype in (ETH_IPV4, ETH_IPV6):
                return _ethertype(ts, data[:end], pos, ethertype, wire_len, depth)
    except (DecodeError, NotIP):
        return None
    return None
