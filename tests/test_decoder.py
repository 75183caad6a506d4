"""netgptd.decode.decoder.decode on frames built with netgptd.synth.frames."""

from __future__ import annotations

import struct

import pytest

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import ETH_TEB, decode
from netgptd.decode.packet import (
    NO_FRAGMENT,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_PSH,
    DecodeError,
    NotIP,
    Packet,
)
from netgptd.synth.frames import (
    IP_MF,
    addr,
    checksum,
    destination_options,
    ethernet,
    fragment_header,
    gre,
    hop_by_hop,
    icmp,
    icmp_echo,
    icmpv6_echo,
    ip,
    ipv4,
    ipv4_fragments,
    ipv6,
    ipv6_fragments,
    tcp,
    udp,
    vxlan,
)

A, B = "10.0.0.1", "10.0.0.2"
C, D = "192.168.1.10", "192.168.1.20"
A6, B6 = "2001:db8::1", "2001:db8::2"
TS = 1_700_000_000_123_456_789


def dec(data: bytes, linktype: int = 1, wire_len: int | None = None) -> Packet:
    return decode(PacketRecord(TS, linktype, data, len(data) if wire_len is None else wire_len))


def reason(data: bytes, linktype: int = 1) -> str:
    with pytest.raises(DecodeError) as info:
        dec(data, linktype)
    return info.value.reason


def skipped(data: bytes, linktype: int = 1) -> str:
    with pytest.raises(NotIP) as info:
        dec(data, linktype)
    return info.value.reason


def tcp4(payload: bytes = b"hello", options: bytes = b"") -> bytes:
    return ipv4(A, B, PROTO_TCP, tcp(A, B, 40000, 80, "PA", payload, seq=7, ack=9, options=options))


def udp4(payload: bytes = b"data", sport: int = 5353, dport: int = 53) -> bytes:
    return ipv4(A, B, PROTO_UDP, udp(A, B, sport, dport, payload))


# -- the builder itself -----------------------------------------------------------------


def test_built_frames_carry_valid_checksums() -> None:
    packet = tcp4(b"odd")
    assert checksum(packet[:20]) == 0
    pseudo4 = addr(A) + addr(B) + struct.pack("!xBH", PROTO_TCP, len(packet) - 20)
    assert checksum(pseudo4 + packet[20:]) == 0
    segment = udp(A6, B6, 1, 2, b"abc")
    pseudo6 = addr(A6) + addr(B6) + struct.pack("!I3xB", len(segment), PROTO_UDP)
    assert checksum(pseudo6 + segment) == 0
    assert checksum(icmp_echo(1, 2, b"ping")) == 0


# -- Ethernet, IPv4, TCP, UDP -------------------------------------------------------------


def test_ethernet_ipv4_tcp_fields_and_offsets() -> None:
    frame = ethernet(tcp4())
    p = dec(frame, wire_len=1000)
    assert (p.ts_ns, p.ip_version, p.src, p.dst, p.proto) == (TS, 4, addr(A), addr(B), PROTO_TCP)
    assert (p.sport, p.dport, p.tcp_flags) == (40000, 80, TCP_PSH | TCP_ACK)
    assert (p.l3_off, p.l4_off, p.payload_off, p.end) == (14, 34, 54, len(frame))
    assert p.data is frame and p.data[p.payload_off : p.end] == b"hello" and p.payload_len == 5
    assert (p.wire_len, p.frag_id, p.frag_offset, p.frag_more) == (1000, NO_FRAGMENT, 0, False)


def test_tcp_options_move_the_payload() -> None:
    p = dec(ethernet(tcp4(b"xy", options=b"\x02\x04\x05\xb4\x01\x03\x03\x07")))
    assert (p.l4_off, p.payload_off, p.payload_len) == (34, 62, 2)


def test_udp_fields() -> None:
    p = dec(ethernet(udp4(b"12345")))
    assert (p.proto, p.sport, p.dport, p.tcp_flags) == (PROTO_UDP, 5353, 53, 0)
    assert (p.l4_off, p.payload_off, p.payload_len) == (34, 42, 5)


def test_ipv6_tcp() -> None:
    frame = ethernet(ipv6(A6, B6, PROTO_TCP, tcp(A6, B6, 1, 443, "S")))
    p = dec(frame)
    assert (p.ip_version, p.src, p.dst, p.sport, p.dport) == (6, addr(A6), addr(B6), 1, 443)
    assert (p.l3_off, p.l4_off, p.payload_off, p.end) == (14, 54, 74, len(frame))


@pytest.mark.parametrize(("vlans", "l3"), [((100,), 18), ((100, 200), 22), ((1, 2, 3), 26)])
def test_vlan_and_qinq(vlans: tuple[int, ...], l3: int) -> None:
    frame = ethernet(tcp4(), vlans=vlans)
    p = dec(frame)
    assert (p.l3_off, p.l4_off, p.sport, p.end) == (l3, l3 + 20, 40000, len(frame))


def test_old_qinq_tpid() -> None:
    frame = bytearray(ethernet(tcp4(), vlans=(100, 200)))
    frame[12:14] = b"\x91\x00"
    assert dec(bytes(frame)).l3_off == 22


def test_ethernet_padding_is_excluded_from_end() -> None:
    packet = udp4(b"")
    frame = ethernet(packet, pad=True)
    assert len(frame) == 60
    p = dec(frame)
    assert p.end == 14 + len(packet) == 42 and p.payload_len == 0


def test_snapped_packet_keeps_what_was_captured() -> None:
    frame = ethernet(tcp4(bytes(100)))
    p = dec(frame[:70], wire_len=len(frame))
    assert (p.end, p.payload_len, p.wire_len) == (70, 16, len(frame))


# -- other link layers ----------------------------------------------------------------------


def sll(packet: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), protocol) + packet


def sll2(packet: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HxxIHBB8s", protocol, 2, 1, 0, 6, bytes(8)) + packet


def test_linux_sll() -> None:
    p = dec(sll(tcp4()), 113)
    assert (p.l3_off, p.l4_off, p.sport) == (16, 36, 40000)
    p6 = dec(sll(ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 1, 2)), 0x86DD), 113)
    assert (p6.ip_version, p6.l3_off) == (6, 16)


def test_linux_sll2() -> None:
    p = dec(sll2(udp4()), 276)
    assert (p.l3_off, p.l4_off, p.dport) == (20, 40, 53)


@pytest.mark.parametrize("linktype", [101, 228, 229, 12, 14])
@pytest.mark.parametrize("version", [4, 6])
def test_raw_ip(linktype: int, version: int) -> None:
    packet = tcp4() if version == 4 else ipv6(A6, B6, PROTO_TCP, tcp(A6, B6, 40000, 80))
    p = dec(packet, linktype)
    assert (p.ip_version, p.l3_off, p.sport, p.end) == (version, 0, 40000, len(packet))


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize(("family", "version"), [(2, 4), (10, 6), (24, 6), (28, 6), (30, 6)])
def test_null_loopback(byteorder: str, family: int, version: int) -> None:
    packet = tcp4() if version == 4 else ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 7, 9))
    p = dec(family.to_bytes(4, byteorder) + packet, 0)  # type: ignore[arg-type]
    assert (p.ip_version, p.l3_off, p.l4_off) == (version, 4, 24 if version == 4 else 44)


def test_openbsd_loop() -> None:
    p = dec((24).to_bytes(4, "big") + ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 7, 9)), 108)
    assert (p.ip_version, p.l3_off) == (6, 4)
    assert dec((2).to_bytes(4, "big") + udp4(), 108).ip_version == 4


def test_mpls_and_pppoe() -> None:
    label = struct.pack("!I", 1000 << 12 | 1 << 8 | 64)  # bottom of stack
    assert dec(ethernet(struct.pack("!I", 999 << 12 | 64) + label + udp4(), 0x8847)).l3_off == 22
    pppoe = struct.pack("!BBHH", 0x11, 0, 1, 2 + len(udp4())) + b"\x00\x21" + udp4()
    assert dec(ethernet(pppoe, 0x8864)).l3_off == 22


# -- IPv4 options and fragments -----------------------------------------------------------


def test_ipv4_options() -> None:
    packet = ipv4(A, B, PROTO_UDP, udp(A, B, 1, 2, b"x"), options=b"\x94\x04\x00\x00\x01")  # router alert, NOP
    p = dec(ethernet(packet))
    assert (p.l3_off, p.l4_off, p.payload_off, p.sport) == (14, 42, 50, 1)


def test_ipv4_fragments() -> None:
    whole = ipv4(A, B, PROTO_UDP, udp(A, B, 1111, 2222, bytes(range(200)) * 2), ident=0xBEEF)
    first, middle, last = (dec(ethernet(f)) for f in ipv4_fragments(whole, 160))
    assert (first.sport, first.dport, first.l4_off) == (1111, 2222, 34)
    assert (first.frag_id, first.frag_offset, first.frag_more) == (0xBEEF, 0, True)
    for p, offset, more in ((middle, 160, True), (last, 320, False)):
        assert (p.l4_off, p.payload_off, p.sport, p.dport, p.proto) == (-1, -1, 0, 0, PROTO_UDP)
        assert (p.frag_id, p.frag_offset, p.frag_more, p.payload_len) == (0xBEEF, offset, more, 0)
    assert last.end == 14 + 20 + 408 - 320


def test_ipv4_dont_fragment_is_not_a_fragment() -> None:
    p = dec(ethernet(ipv4(A, B, PROTO_UDP, udp(A, B, 1, 2), ident=5, flags=0x2)))
    assert (p.frag_id, p.frag_more) == (NO_FRAGMENT, False)


def test_ipv4_fragments_repeat_only_copied_options() -> None:
    options = b"\x94\x04\x00\x00" + b"\x07\x07\x04" + bytes(4)  # router alert (copied), record route (not)
    whole = ipv4(A, B, PROTO_UDP, udp(A, B, 1, 2, bytes(64)), options=options, ident=3)
    first, second = ipv4_fragments(whole, 48)
    assert (first[0] & 0x0F, second[0] & 0x0F) == (8, 6)
    assert dec(second, 101).frag_offset == 48


# -- IPv6 extension headers and fragments ---------------------------------------------------


def test_ipv6_extension_headers_and_first_fragment() -> None:
    segment = tcp(A6, B6, 40000, 22, "S")
    extensions = [hop_by_hop(b"\x05\x02\x00\x00"), destination_options(bytes(10)), fragment_header(0x12345678, 0, True)]
    frame = ethernet(ipv6(A6, B6, PROTO_TCP, segment, extensions))
    p = dec(frame)
    assert (p.proto, p.sport, p.dport) == (PROTO_TCP, 40000, 22)
    assert (p.l3_off, p.l4_off, p.payload_off) == (14, 14 + 40 + 8 + 16 + 8, 14 + 40 + 8 + 16 + 8 + 20)
    assert (p.frag_id, p.frag_offset, p.frag_more) == (0x12345678, 0, True)


def test_ipv6_atomic_fragment_is_a_whole_packet() -> None:
    p = dec(ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 1, 2), [fragment_header(9)]), 229)
    assert (p.frag_id, p.l4_off, p.sport) == (NO_FRAGMENT, 48, 1)


def test_ipv6_fragments() -> None:
    whole = ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 3, 4, bytes(300)), [hop_by_hop()])
    first, second = (dec(ethernet(f)) for f in ipv6_fragments(whole, 200, 77))
    assert (first.sport, first.frag_id, first.frag_more, first.l4_off) == (3, 77, True, 14 + 40 + 8 + 8)
    assert (second.l4_off, second.sport, second.proto) == (-1, 0, PROTO_UDP)
    assert (second.frag_id, second.frag_offset, second.frag_more) == (77, 200, False)


def test_ipv6_later_fragment_data_is_not_read_as_headers() -> None:
    """Destination options after the fragment header belong to the fragmentable
    part: in a later fragment the bytes after the fragment header are data."""
    whole = ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 3, 4, bytes(300)), [destination_options()])
    fragments = ipv6_fragments(whole, 104, 5)
    first, second = dec(fragments[0], 229), dec(fragments[1], 229)
    assert (first.proto, first.sport, first.frag_id) == (PROTO_UDP, 3, 5)
    assert (second.l4_off, second.frag_id, second.frag_offset) == (-1, 5, 104)


# -- ICMP ---------------------------------------------------------------------------------


def test_icmp_type_and_code_in_ports() -> None:
    p = dec(ethernet(ipv4(A, B, PROTO_ICMP, icmp_echo(7, 1, b"ping"))))
    assert (p.proto, p.sport, p.dport, p.payload_off, p.payload_len) == (PROTO_ICMP, 8, 0, 38, 8)
    p = dec(ethernet(ipv4(A, B, PROTO_ICMP, icmp(3, 1, bytes(4) + tcp4()[:28]))))
    assert (p.sport, p.dport) == (3, 1)


def test_icmpv6_type_and_code_in_ports() -> None:
    p = dec(ethernet(ipv6(A6, B6, PROTO_ICMPV6, icmpv6_echo(A6, B6, 7, 1, reply=True))))
    assert (p.proto, p.sport, p.dport, p.l4_off) == (PROTO_ICMPV6, 129, 0, 54)


# -- tunnels -------------------------------------------------------------------------------


def test_gre_gives_the_inner_packet() -> None:
    inner = ipv4(C, D, PROTO_TCP, tcp(C, D, 5000, 443, "S"))
    p = dec(ethernet(ipv4(A, B, PROTO_GRE, gre(inner))))
    assert (p.src, p.dst, p.proto, p.sport, p.dport) == (addr(C), addr(D), PROTO_TCP, 5000, 443)
    assert (p.l3_off, p.l4_off) == (14 + 20 + 4, 14 + 20 + 4 + 20)


def test_gre_optional_fields_and_ipv6_inner() -> None:
    inner = ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 1, 2))
    p = dec(ethernet(ipv4(A, B, PROTO_GRE, gre(inner, key=42, seq=1, csum=True))))
    assert (p.ip_version, p.src, p.l3_off) == (6, addr(A6), 14 + 20 + 16)


def test_gre_transparent_ethernet_bridging() -> None:
    inner = ethernet(ipv4(C, D, PROTO_UDP, udp(C, D, 9, 10)), vlans=(5,))
    p = dec(ethernet(ipv4(A, B, PROTO_GRE, gre(inner, ETH_TEB))))
    assert (p.src, p.sport, p.l3_off) == (addr(C), 9, 14 + 20 + 4 + 18)


def test_gre_with_undecodable_inner_packet_gives_the_outer_packet() -> None:
    frame = ethernet(ipv4(A, B, PROTO_GRE, gre(b"\x45\x00\x00", 0x0800)))
    p = dec(frame)
    assert (p.src, p.dst, p.proto, p.sport, p.dport) == (addr(A), addr(B), PROTO_GRE, 0, 0)
    assert (p.l3_off, p.l4_off, p.payload_off, p.end) == (14, 34, 34, len(frame))


def test_vxlan_gives_the_inner_packet() -> None:
    inner = ethernet(ipv4(C, D, PROTO_TCP, tcp(C, D, 5000, 80, "SA")))
    frame = ethernet(ipv4(A, B, PROTO_UDP, udp(A, B, 33333, 4789, vxlan(inner, 1001))))
    p = dec(frame)
    assert (p.src, p.dst, p.sport, p.dport) == (addr(C), addr(D), 5000, 80)
    assert (p.l3_off, p.end) == (14 + 20 + 8 + 8 + 14, len(frame))


def test_vxlan_with_undecodable_inner_frame_gives_the_outer_udp() -> None:
    frame = ethernet(ipv4(A, B, PROTO_UDP, udp(A, B, 33333, 4789, vxlan(b"\x00" * 10, 1))))
    p = dec(frame)
    assert (p.src, p.proto, p.dport, p.payload_off) == (addr(A), PROTO_UDP, 4789, 42)


# -- malformed and truncated frames --------------------------------------------------------


def _ipv4_with(total: int | None = None, ihl: int | None = None, version: int = 4) -> bytes:
    packet = bytearray(udp4())
    if total is not None:
        packet[2:4] = total.to_bytes(2, "big")
    packet[0] = version << 4 | (5 if ihl is None else ihl)
    return bytes(packet)


def _tcp_with_data_offset(words: int) -> bytes:
    segment = bytearray(tcp(A, B, 1, 2, "A"))
    segment[12] = words << 4
    return ipv4(A, B, PROTO_TCP, bytes(segment))


MALFORMED = {
    "ethernet_truncated": (ethernet(b"")[:13], 1),
    "vlan_truncated": (ethernet(b"", 0x8100) + b"\x00\x01", 1),
    "ipv4_truncated": (ethernet(udp4()[:19]), 1),
    "ipv4_bad_version": (ethernet(_ipv4_with(version=6), 0x0800), 1),
    "ipv4_bad_header_length": (ethernet(_ipv4_with(ihl=4)), 1),
    "ipv4_bad_total_length": (ethernet(_ipv4_with(total=19)), 1),
    "tcp_truncated": (ethernet(ipv4(A, B, PROTO_TCP, tcp(A, B, 1, 2)[:19])), 1),
    "tcp_bad_header_length": (ethernet(_tcp_with_data_offset(4)), 1),
    "udp_truncated": (ethernet(ipv4(A, B, PROTO_UDP, bytes(7))), 1),
    "icmp_truncated": (ethernet(ipv4(A, B, PROTO_ICMP, bytes(3))), 1),
    "sctp_truncated": (ethernet(ipv4(A, B, 132, bytes(11))), 1),
    "ipv6_truncated": (ethernet(ipv6(A6, B6, PROTO_UDP, b"")[:39]), 1),
    "ipv6_bad_version": (ethernet(udp4(), 0x86DD) + bytes(20), 1),
    "ipv6_ext_truncated": (ipv6(A6, B6, 0, bytes(4)), 229),
    "ipv6_too_many_ext": (ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 1, 2), [destination_options()] * 9), 229),
    "ip_truncated": (b"", 101),
    "ip_bad_version": (b"\x50" + bytes(30), 101),
    "loopback_truncated": (b"\x02\x00\x00", 0),
    "sll_truncated": (sll(b"")[:15], 113),
    "sll2_truncated": (sll2(b"")[:19], 276),
}


@pytest.mark.parametrize("expected", sorted(MALFORMED))
def test_malformed_frames_raise_with_their_reason(expected: str) -> None:
    data, linktype = MALFORMED[expected]
    assert reason(data, linktype) == expected


def test_tcp_data_offset_past_the_packet_is_truncation() -> None:
    assert reason(ethernet(_tcp_with_data_offset(15))) == "tcp_truncated"


def test_ipv4_header_length_past_the_capture_is_truncation() -> None:
    assert reason(ethernet(_ipv4_with(ihl=15))[:40]) == "ipv4_truncated"


def test_ipv6_extension_running_past_the_packet() -> None:
    hbh_claims_64_bytes = bytes((PROTO_UDP, 7)) + bytes(6)
    assert reason(ipv6(A6, B6, 0, hbh_claims_64_bytes), 229) == "ipv6_ext_truncated"


def test_every_prefix_of_a_frame_decodes_or_raises_only_decode_error() -> None:
    frames = [
        ethernet(tcp4(), vlans=(1, 2)),
        ethernet(ipv6(A6, B6, PROTO_TCP, tcp(A6, B6, 1, 2), [hop_by_hop(), fragment_header(1, 0, True)])),
        ethernet(ipv4(A, B, PROTO_GRE, gre(ip(C, D, PROTO_UDP, udp(C, D, 1, 2))))),
    ]
    for frame in frames:
        for cut in range(len(frame)):
            try:
                dec(frame[:cut])
            except DecodeError:
                pass


# -- frames without IP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "linktype", "expected"),
    [
        (ethernet(bytes(28), 0x0806), 1, "arp"),
        (ethernet(bytes(28), 0x0806, vlans=(7,)), 1, "arp"),
        (ethernet(bytes(30), 0x88CC), 1, "lldp"),
        (ethernet(b"\x42\x42\x03" + bytes(40), 46), 1, "llc"),
        (ethernet(bytes(30), 0x88E5), 1, "other_ethertype"),
        (sll(bytes(28), 0x0806), 113, "arp"),
        ((7).to_bytes(4, "little") + udp4(), 0, "loopback_family"),
        (udp4(), 147, "linktype_147"),
        (udp4(), 999, "linktype_999"),
    ],
)
def test_frames_without_ip_raise_not_ip(data: bytes, linktype: int, expected: str) -> None:
    assert skipped(data, linktype) == expected


def test_more_fragments_flag_alone_marks_a_first_fragment() -> None:
    p = dec(ipv4(A, B, PROTO_UDP, udp(A, B, 1, 2), ident=4, flags=IP_MF), 101)
    assert (p.frag_id, p.frag_more) == (4, True)
