"""Pure frame builders: the bytes of Ethernet, IPv4/IPv6, TCP, UDP, ICMP, GRE and VXLAN.

Each builder takes its payload as bytes and returns the encoded layer, so a
frame is built inside out::

    ethernet(ipv4(a, b, PROTO_TCP, tcp(a, b, 40000, 80, "S")))

Lengths and checksums are computed (TCP, UDP and ICMPv6 over the
pseudo-header of the addresses given), so that decoders and tools that
verify them accept the frames. Addresses are text ('10.0.0.1',
'2001:db8::1') or packed bytes (4 or 16).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Sequence

from netgptd.decode.decoder import ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_VLAN
from netgptd.decode.packet import PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK

Address = str | bytes
Extension = tuple[int, bytes]  # (header type, header bytes whose first byte ipv6() fills in)

IP_DF = 0x2  # IPv4 flags field (3 bits)
IP_MF = 0x1

IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DEST_OPTS = 60

ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")

_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
_u16 = struct.Struct("!H")


def addr(address: Address) -> bytes:
    """The packed (4- or 16-byte) form of an address given as text or bytes."""
    if isinstance(address, bytes):
        if len(address) not in (4, 16):
            raise ValueError(f"a packed address has 4 or 16 bytes, not {len(address)}")
        return address
    return ipaddress.ip_address(address).packed


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_checksum(message: bytes, at: int, value: int) -> bytes:
    return message[:at] + _u16.pack(value) + message[at + 2 :]


def _l4_checksum(src: Address, dst: Address, proto: int, segment: bytes) -> int:
    s, d = addr(src), addr(dst)
    if len(s) != len(d):
        raise ValueError("source and destination are of different IP versions")
    if len(s) == 4:
        pseudo = s + d + struct.pack("!xBH", proto, len(segment))
    else:
        pseudo = s + d + struct.pack("!I3xB", len(segment), proto)
    return checksum(pseudo + segment)


def _ethertype_of(packet: bytes) -> int:
    return ETH_IPV6 if packet[:1] and packet[0] >> 4 == 6 else ETH_IPV4


# -- link layer ----------------------------------------------------------------


def ethernet(
    payload: bytes,
    ethertype: int | None = None,
    src: bytes = MAC_A,
    dst: bytes = MAC_B,
    vlans: Sequence[int] = (),
    pad: bool = False,
) -> bytes:
    """An Ethernet II frame.

    ``vlans`` are tag control values (VLAN ids), outermost first; with two
    or more (QinQ) the outer tags use TPID 0x88A8 and the innermost 0x8100.
    Without ``ethertype``, IPv4 or IPv6 is read from the payload's version
    nibble. ``pad`` fills the frame to Ethernet's 60-byte minimum.
    """
    if ethertype is None:
        ethertype = _ethertype_of(payload)
    last = len(vlans) - 1
    tags = b"".join(struct.pack("!HH", ETH_QINQ if i < last else ETH_VLAN, tci) for i, tci in enumerate(vlans))
    frame = dst + src + tags + _u16.pack(ethertype) + payload
    if pad and len(frame) < 60:
        frame += bytes(60 - len(frame))
    return frame


# -- IPv4 ------------------------------------------------------------------------


def ipv4(
    src: Address,
    dst: Address,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    ident: int = 0,
    flags: int = 0,
    frag_offset: int = 0,
    options: bytes = b"",
    tos: int = 0,
) -> bytes:
    """An IPv4 packet with its header checksum.

    ``flags`` is the 3-bit field (IP_DF, IP_MF); ``frag_offset`` is in
    bytes, a multiple of 8; ``options`` are padded with end-of-list bytes
    to a multiple of 4.
    """
    s, d = addr(src), addr(dst)
    if len(s) != 4 or len(d) != 4:
        raise ValueError("ipv4() needs IPv4 addresses")
    if frag_offset % 8:
        raise ValueError("fragment offsets are multiples of 8 bytes")
    options += bytes(-len(options) % 4)
    hlen = 20 + len(options)
    if hlen > 60:
        raise ValueError("IPv4 options are at most 40 bytes")
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | hlen >> 2, tos, hlen + len(payload), ident,
        flags << 13 | frag_offset >> 3, ttl, proto, 0, s, d,
    ) + options  # fmt: skip
    return _with_checksum(header, 10, checksum(header)) + payload


def _copied_options(options: bytes) -> bytes:
    """The options with the copy bit set: those every fragment repeats (RFC 791)."""
    out, i = b"", 0
    while i < len(options) and options[i] != 0:
        if options[i] == 1:  # no-operation
            i += 1
            continue
        length = options[i + 1] if i + 1 < len(options) else 0
        if length < 2:
            break
        if options[i] & 0x80:
            out += options[i : i + length]
        i += length
    return out


def ipv4_fragments(packet: bytes, size: int) -> list[bytes]:
    """Split an IPv4 packet into fragments of at most ``size`` payload bytes
    (rounded down to a multiple of 8). Options without the copy bit stay in
    the first fragment; a packet that is itself a fragment splits in place."""
    size -= size % 8
    if size <= 0:
        raise ValueError("fragment size must be at least 8 bytes")
    hlen = (packet[0] & 0x0F) << 2
    tos, total, ident, word, ttl, proto = struct.unpack_from("!xBHHHBB", packet)
    body = packet[hlen:total]
    options = packet[20:hlen]
    copied = _copied_options(options)
    base, flags = (word & 0x1FFF) << 3, word >> 13
    out = []
    for start in range(0, len(body), size):
        more = flags & IP_MF if start + size >= len(body) else IP_MF
        out.append(ipv4(
            packet[12:16], packet[16:20], proto, body[start : start + size], ttl=ttl, ident=ident,
            flags=flags & IP_DF | more, frag_offset=base + start, options=options if start == 0 else copied, tos=tos,
        ))  # fmt: skip
    return out


# -- IPv6 ------------------------------------------------------------------------


def _options_header(header_type: int, options: bytes) -> Extension:
    pad = -(2 + len(options)) % 8
    if pad == 1:
        options += b"\0"  # Pad1
    elif pad:
        options += bytes((1, pad - 2)) + bytes(pad - 2)  # PadN
    return header_type, bytes((0, (2 + len(options)) // 8 - 1)) + options


def hop_by_hop(options: bytes = b"") -> Extension:
    """A hop-by-hop options header holding ``options`` (TLVs), padded to 8 bytes."""
    return _options_header(IPV6_HOP_BY_HOP, options)


def destination_options(options: bytes = b"") -> Extension:
    """A destination options header holding ``options`` (TLVs), padded to 8 bytes."""
    return _options_header(IPV6_DEST_OPTS, options)


def fragment_header(ident: int, offset: int = 0, more: bool = False) -> Extension:
    """An IPv6 fragment header; ``offset`` in bytes, a multiple of 8."""
    if offset % 8:
        raise ValueError("fragment offsets are multiples of 8 bytes")
    return IPV6_FRAGMENT, struct.pack("!xxHI", offset | more, ident)


def ipv6(
    src: Address,
    dst: Address,
    next_header: int,
    payload: bytes,
    extensions: Sequence[Extension] = (),
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 packet; ``extensions`` (from hop_by_hop(), destination_options(),
    fragment_header()) are chained in order before the ``next_header`` payload."""
    s, d = addr(src), addr(dst)
    if len(s) != 16 or len(d) != 16:
        raise ValueError("ipv6() needs IPv6 addresses")
    types = [t for t, _ in extensions] + [next_header]
    chain = b"".join(bytes((types[i + 1],)) + header[1:] for i, (_, header) in enumerate(extensions))
    body = chain + payload
    first = struct.pack("!IHBB", 6 << 28 | traffic_class << 20 | flow_label, len(body), types[0], hop_limit)
    return first + s + d + body


def ipv6_fragments(packet: bytes, size: int, ident: int) -> list[bytes]:
    """Split an IPv6 packet into fragments of at most ``size`` fragmentable
    bytes each (rounded down to a multiple of 8). The unfragmentable part
    (the header, hop-by-hop and routing headers, and destination options
    before a routing header) is repeated in each fragment (RFC 8200 4.5)."""
    size -= size % 8
    if size <= 0:
        raise ValueError("fragment size must be at least 8 bytes")
    end = 40 + _u16.unpack_from(packet, 4)[0]
    nxt, pos, nxt_at = packet[6], 40, 6
    while nxt in (IPV6_HOP_BY_HOP, IPV6_ROUTING) or (nxt == IPV6_DEST_OPTS and packet[pos] == IPV6_ROUTING):
        nxt_at = pos
        nxt, pos = packet[pos], pos + ((packet[pos + 1] + 1) << 3)
    unfragmentable = bytearray(packet[:pos])
    unfragmentable[nxt_at] = IPV6_FRAGMENT
    body = packet[pos:end]
    out = []
    for start in range(0, len(body), size):
        more = start + size < len(body)
        fragment = unfragmentable + struct.pack("!BxHI", nxt, start | more, ident) + body[start : start + size]
        _u16.pack_into(fragment, 4, len(fragment) - 40)
        out.append(bytes(fragment))
    return out


def ip(src: Address, dst: Address, proto: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet with default header fields, by the addresses' version."""
    if len(addr(src)) == 4:
        return ipv4(src, dst, proto, payload)
    return ipv6(src, dst, proto, payload)


# -- transport -------------------------------------------------------------------


def tcp_flags(flags: int | str) -> int:
    """A TCP flag mask from TCP_* bits or letters ('S', 'SA', 'FA', 'R', 'PA')."""
    if isinstance(flags, int):
        return flags
    mask = 0
    for letter in flags.upper():
        mask |= _FLAG_BITS[letter]
    return mask


def tcp(
    src: Address,
    dst: Address,
    sport: int,
    dport: int,
    flags: int | str = TCP_ACK,
    payload: bytes = b"",
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    options: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """A TCP segment checksummed for ``src``/``dst``; ``options`` are
    padded with end-of-list bytes to a multiple of 4."""
    options += bytes(-len(options) % 4)
    doff = 20 + len(options)
    if doff > 60:
        raise ValueError("TCP options are at most 40 bytes")
    segment = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, doff << 2, tcp_flags(flags), window, 0, urgent
    ) + options + payload  # fmt: skip
    return _with_checksum(segment, 16, _l4_checksum(src, dst, PROTO_TCP, segment))


def udp(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A UDP datagram checksummed for ``src``/``dst``."""
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    # A computed 0 is sent as 0xFFFF: 0 on the wire means "no checksum".
    return _with_checksum(datagram, 6, _l4_checksum(src, dst, PROTO_UDP, datagram) or 0xFFFF)


def icmp(icmp_type: int, code: int = 0, body: bytes = b"") -> bytes:
    """An ICMP message; ``body`` follows the checksum (4 bytes in)."""
    message = struct.pack("!BBH", icmp_type, code, 0) + body
    return _with_checksum(message, 2, checksum(message))


def icmp_echo(ident: int = 0, seq: int = 0, payload: bytes = b"", reply: bool = False) -> bytes:
    """An ICMP echo request (or reply)."""
    return icmp(ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST, 0, struct.pack("!HH", ident, seq) + payload)


def icmpv6(src: Address, dst: Address, icmp_type: int, code: int = 0, body: bytes = b"") -> bytes:
    """An ICMPv6 message checksummed for ``src``/``dst``."""
    message = struct.pack("!BBH", icmp_type, code, 0) + body
    return _with_checksum(message, 2, _l4_checksum(src, dst, PROTO_ICMPV6, message))


def icmpv6_echo(
    src: Address, dst: Address, ident: int = 0, seq: int = 0, payload: bytes = b"", reply: bool = False
) -> bytes:
    """An ICMPv6 echo request (or reply)."""
    icmp_type = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    return icmpv6(src, dst, icmp_type, 0, struct.pack("!HH", ident, seq) + payload)


# -- tunnels ---------------------------------------------------------------------


def gre(
    payload: bytes, protocol: int | None = None, key: int | None = None, seq: int | None = None, csum: bool = False
) -> bytes:
    """A GRE version 0 packet (IP protocol 47) around ``payload``.

    Without ``protocol``, IPv4 or IPv6 is read from the payload; use
    ETH_TEB (0x6558) for an Ethernet frame. ``key``, ``seq`` and ``csum``
    add the optional fields.
    """
    if protocol is None:
        protocol = _ethertype_of(payload)
    bits = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    fields = bytes(4) if csum else b""
    fields += b"".join(struct.pack("!I", v) for v in (key, seq) if v is not None)
    message = struct.pack("!HH", bits, protocol) + fields + payload
    return _with_checksum(message, 4, checksum(message)) if csum else message


def vxlan(frame: bytes, vni: int) -> bytes:
    """A VXLAN header and the Ethernet ``frame`` it carries: the payload of a
    UDP datagram to port 4789."""
    return struct.pack("!II", 0x08000000, vni << 8) + frame
