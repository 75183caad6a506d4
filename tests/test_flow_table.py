"""FlowTable driven with decoded frames built by netgptd.synth.frames (no files)."""

from __future__ import annotations

import tracemalloc

import communityid
import pytest

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_SYN, Packet
from netgptd.flow.config import STATE_CLOSED, STATE_ESTABLISHED, STATE_NEW, FlowConfig, Timeouts
from netgptd.flow.table import Flow, FlowTable
from netgptd.synth.frames import (
    Address,
    addr,
    destination_options,
    ethernet,
    icmp_echo,
    icmpv6_echo,
    ip,
    ipv4,
    ipv4_fragments,
    ipv6,
    ipv6_fragments,
    tcp,
    udp,
)

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
A6, B6 = "2001:db8::1", "2001:db8::2"

# Short, distinct timeouts so each test can tell them apart.
TCP_T = Timeouts(new=10, established=100, closed=5, emergency_new=2, emergency_established=20, emergency_closed=1, active=0)
UDP_T = Timeouts(new=20, established=50, closed=0, emergency_new=4, emergency_established=8, emergency_closed=0, active=0)
ICMP_T = Timeouts(new=7, established=70, closed=0, emergency_new=1, emergency_established=3, emergency_closed=0, active=0)
DEFAULT_T = Timeouts(new=3, established=30, closed=0, emergency_new=1, emergency_established=3, emergency_closed=0, active=0)


def config(**kwargs: object) -> FlowConfig:
    timeouts = {"tcp": TCP_T, "udp": UDP_T, "icmp": ICMP_T, "default": DEFAULT_T}
    return FlowConfig(timeouts=timeouts, **kwargs)  # type: ignore[arg-type]


def packet(t: float, frame_ip: bytes) -> Packet:
    frame = ethernet(frame_ip)
    return decode(PacketRecord(T0 + round(t * NS), 1, frame, len(frame)))


def t4(t: float, src: Address, dst: Address, sport: int, dport: int, flags: str = "A", payload: bytes = b"") -> Packet:
    return packet(t, ip(src, dst, PROTO_TCP, tcp(src, dst, sport, dport, flags, payload)))


def u4(t: float, src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"") -> Packet:
    return packet(t, ip(src, dst, PROTO_UDP, udp(src, dst, sport, dport, payload)))


def handshake(table: FlowTable, t: float = 0.0, client: str = A, server: str = B, cport: int = 40000) -> Flow:
    table.add(t4(t, client, server, cport, 80, "S"))
    table.add(t4(t + 0.01, server, client, 80, cport, "SA"))
    flow = table.add(t4(t + 0.02, client, server, cport, 80, "A"))
    assert flow is not None
    return flow


def reasons(flows: list[Flow]) -> list[str]:
    return [f.end_reason for f in flows]


# -- accounting and orientation -------------------------------------------------------------


def test_bidirectional_accounting() -> None:
    table = FlowTable(config())
    packets = [
        t4(0.0, A, B, 40000, 80, "S"),
        t4(0.1, B, A, 80, 40000, "SA"),
        t4(0.2, A, B, 40000, 80, "A"),
        t4(0.3, A, B, 40000, 80, "PA", b"GET / HTTP/1.1\r\n\r\n"),
        t4(0.4, B, A, 80, 40000, "PA", bytes(1000)),
    ]
    flows = {id(table.add(p)) for p in packets}
    assert len(flows) == 1 and len(table) == 1
    (flow,) = table.flows()
    assert (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port) == (addr(A), 40000, addr(B), 80)
    assert (flow.pkts_toserver, flow.pkts_toclient) == (3, 2)
    assert flow.bytes_toserver == sum(p.wire_len for p in packets if p.src == addr(A))
    assert flow.bytes_toclient == sum(p.wire_len for p in packets if p.src == addr(B))
    assert (flow.start_ns, flow.last_ns) == (T0, T0 + 4 * NS // 10)
    assert flow.tcp_flags_toserver == 0x02 | 0x08 | 0x10 and flow.tcp_flags_toclient == 0x02 | 0x08 | 0x10
    assert (flow.proto, flow.ip_version) == (PROTO_TCP, 4)


def test_orientation_from_the_first_packet() -> None:
    """Two service ports and no payload: nothing else decides (netgptd.flow.direction, the last rule)."""
    table = FlowTable(config())
    flow = table.add(u4(0, B, A, 53, 5353))
    table.add(u4(1, A, B, 5353, 53))
    assert flow is not None
    assert (flow.client_ip, flow.client_port, flow.server_port) == (addr(B), 53, 5353)
    assert (flow.pkts_toserver, flow.pkts_toclient) == (1, 1)


def test_orientation_from_syn() -> None:
    table = FlowTable(config())
    flow = table.add(t4(0, B, A, 80, 40000, "S"))
    assert flow is not None and flow.client_ip == addr(B) and flow.client_port == 80


def test_syn_ack_first_makes_its_receiver_the_client() -> None:
    table = FlowTable(config())
    flow = table.add(t4(0, B, A, 80, 40000, "SA"))
    table.add(t4(0.1, A, B, 40000, 80, "A"))
    assert flow is not None
    assert (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port) == (addr(A), 40000, addr(B), 80)
    assert (flow.pkts_toserver, flow.pkts_toclient) == (1, 1)
    assert flow.tcp_flags_toclient == TCP_SYN | TCP_ACK


def test_same_host_direction_comes_from_the_ports() -> None:
    table = FlowTable(config())
    one = table.add(u4(0, A, A, 1000, 2000))
    two = table.add(u4(0, A, A, 2000, 1000))
    assert one is two and (one.pkts_toserver, one.pkts_toclient) == (1, 1)  # type: ignore[union-attr]


# -- TCP state --------------------------------------------------------------------------------


def test_tcp_states_new_established_closed_by_fins() -> None:
    table = FlowTable(config())
    flow = table.add(t4(0, A, B, 40000, 80, "S"))
    assert flow is not None and flow.state == STATE_NEW
    table.add(t4(0.1, B, A, 80, 40000, "SA"))
    assert flow.state == STATE_NEW
    table.add(t4(0.2, A, B, 40000, 80, "A"))
    assert flow.state == STATE_ESTABLISHED
    table.add(t4(0.3, A, B, 40000, 80, "FA"))
    assert flow.state == STATE_ESTABLISHED
    table.add(t4(0.4, B, A, 80, 40000, "FA"))
    assert flow.state == STATE_CLOSED
    assert flow.tcp_flags_toserver & flow.tcp_flags_toclient & TCP_FIN


@pytest.mark.parametrize("established", [False, True])
def test_rst_closes(established: bool) -> None:
    table = FlowTable(config())
    flow = handshake(table) if established else table.add(t4(0, A, B, 40000, 80, "S"))
    assert flow is not None
    table.add(t4(1, B, A, 80, 40000, "R"))
    assert flow.state == STATE_CLOSED


def test_syn_on_a_closed_flow_starts_a_new_one() -> None:
    table = FlowTable(config())
    old = handshake(table)
    table.add(t4(1, B, A, 80, 40000, "R"))
    table.add(t4(1.5, B, A, 80, 40000, "SA"))  # not a SYN alone: still the old flow
    assert len(table) == 1 and old.pkts_toclient == 3
    new = table.add(t4(2, A, B, 40000, 80, "S"))
    assert new is not None and new is not old and new.flow_id == old.flow_id + 1
    assert (new.state, new.pkts_toserver, new.start_ns) == (STATE_NEW, 1, T0 + 2 * NS)
    assert table.pop_ended() == [old] and old.end_reason == "tcp_reuse"
    assert len(table) == 1 and table.evictions["tcp_reuse"] == 1


# -- idle timeouts ------------------------------------------------------------------------------


def ended_at(table: FlowTable, t: float) -> list[Flow]:
    """Advance packet time with an unrelated packet and take what ended."""
    table.add(u4(t, C, C, 1, 1))
    return [f for f in table.pop_ended() if f.client_ip != addr(C)]


@pytest.mark.parametrize(
    ("make", "timeout"),
    [
        (lambda table: table.add(u4(0, A, B, 1000, 53)), UDP_T.new),
        (lambda table: (table.add(u4(0, A, B, 1000, 53)), table.add(u4(0, B, A, 53, 1000)))[0], UDP_T.established),
        (lambda table: table.add(t4(0, A, B, 40000, 80, "S")), TCP_T.new),
        (lambda table: handshake(table, 0.0, cport=40000), TCP_T.established),
        (lambda table: (handshake(table), table.add(t4(0.02, A, B, 40000, 80, "R")))[0], TCP_T.closed),
        (lambda table: table.add(packet(0, ipv4(A, B, PROTO_ICMP, icmp_echo(1, 1)))), ICMP_T.new),
        (lambda table: table.add(packet(0, ipv4(A, B, 132, bytes(12)))), DEFAULT_T.new),
    ],
    ids=["udp-new", "udp-established", "tcp-new", "tcp-established", "tcp-closed", "icmp-new", "sctp-default"],
)
def test_idle_timeout_per_protocol_and_state(make, timeout: float) -> None:  # type: ignore[no-untyped-def]
    table = FlowTable(config())
    flow = make(table)
    last = (flow.last_ns - T0) / NS
    assert ended_at(table, last + timeout - 0.5) == []
    assert ended_at(table, last + timeout + 1) == [flow]  # timers have 1 s buckets
    assert flow.end_reason == "timeout" and table.evictions["timeout"] == 1


def test_timeouts_follow_packet_time_only() -> None:
    table = FlowTable(config())
    flow = table.add(u4(0, A, B, 1000, 53))
    table.add(u4(15, A, B, 1000, 53))  # pushes the deadline to 35 s
    assert ended_at(table, 25) == []
    assert table.pop_ended() == []  # nothing ends between packets
    assert ended_at(table, 36) == [flow]


def test_a_packet_far_in_the_future_expires_earlier_flows() -> None:
    table = FlowTable(config())
    flows = [table.add(u4(i, A, B, 1000 + i, 53)) for i in range(50)] + [handshake(table, 1.0)]
    late = table.add(u4(86_400, B, A, 9, 9))
    ended = table.pop_ended()
    assert sorted(f.flow_id for f in ended) == sorted(f.flow_id for f in flows)  # type: ignore[union-attr]
    assert set(reasons(ended)) == {"timeout"}
    assert len(table) == 1 and next(table.flows()) is late


def test_late_packet_of_an_expired_flow_starts_a_new_one() -> None:
    table = FlowTable(config())
    old = table.add(u4(0, A, B, 1000, 53))
    new = table.add(u4(100, A, B, 1000, 53))
    assert new is not old and table.pop_ended() == [old]


# -- active timeout ----------------------------------------------------------------------------


def test_active_timeout_continues_in_a_new_record() -> None:
    udp_t = Timeouts(30, 300, 0, 10, 100, 0, active=60)
    table = FlowTable(FlowConfig(timeouts={"default": DEFAULT_T, "udp": udp_t}))
    first = table.add(u4(0, A, B, 5000, 53))
    for t in range(10, 60, 10):
        table.add(u4(t, B, A, 53, 5000) if t % 20 else u4(t, A, B, 5000, 53))
    assert table.pop_ended() == []
    second = table.add(u4(60, B, A, 53, 5000))
    assert first is not None and second is not None and second is not first
    assert table.pop_ended() == [first] and first.end_reason == "active_timeout"
    assert (first.pkts_toserver + first.pkts_toclient, first.start_ns, first.last_ns) == (6, T0, T0 + 50 * NS)
    assert (second.client_ip, second.client_port, second.server_ip, second.server_port) == (addr(A), 5000, addr(B), 53)
    assert (second.pkts_toserver, second.pkts_toclient, second.start_ns) == (0, 1, T0 + 60 * NS)
    assert second.state == STATE_ESTABLISHED and second.flow_id > first.flow_id
    assert second.community_id == first.community_id
    assert len(table) == 1 and table.evictions["active_timeout"] == 1
    for t in range(70, 120, 10):
        assert table.add(u4(t, A, B, 5000, 53)) is second
    third = table.add(u4(120, A, B, 5000, 53))
    assert table.pop_ended() == [second] and third is not second and third is not None
    assert third.start_ns == T0 + 120 * NS


def test_continuation_keeps_first_packets_until_a_verdict() -> None:
    """A record continued after an active timeout inherits the verdict, or the packets to get one."""
    udp_t = Timeouts(30, 300, 0, 10, 100, 0, active=60)
    table = FlowTable(FlowConfig(timeouts={"default": DEFAULT_T, "udp": udp_t}, first_packets=2))
    first = table.add(u4(0, A, B, 5000, 53, b"q"))
    table.add(u4(1, B, A, 53, 5000, b"r"))
    second = table.add(u4(60, A, B, 5000, 53, b"q2"))
    assert first is not None and second is not None and second is not first
    assert second.verdict is None and second.first_packets == first.first_packets
    assert second.first_packets is not first.first_packets  # its own list
    second.verdict = {"app": "DNS"}
    third = table.add(u4(120, A, B, 5000, 53, b"q3"))
    assert third is not None and third.verdict == {"app": "DNS"} and third.first_packets is None


def test_active_timeout_moves_fragment_trains_to_the_new_record() -> None:
    udp_t = Timeouts(30, 300, 0, 10, 100, 0, active=10)
    table = FlowTable(FlowConfig(timeouts={"default": DEFAULT_T, "udp": udp_t}))
    table.add(u4(0, A, B, 5000, 53))
    whole = ipv4(A, B, PROTO_UDP, udp(A, B, 5000, 53, bytes(100)), ident=77)
    first, rest = ipv4_fragments(whole, 64)
    table.add(packet(9, first))
    continued = table.add(packet(10, rest))
    assert continued is not None and continued.start_ns == T0 + 10 * NS and continued.pkts_toserver == 1
    assert table.fragments_unmatched == 0


# -- capacity and emergency mode -------------------------------------------------------------------


def test_emergency_mode_evicts_and_recovers() -> None:
    table = FlowTable(config(max_flows=100, emergency_evict=0.05, emergency_recovery=0.5))
    for i in range(100):
        table.add(u4(0, A, B, 1000 + i, 53))
    assert not table.emergency and table.pop_ended() == []
    crowded = table.add(u4(0.5, A, B, 9999, 53))
    assert table.emergency and table.emergency_entered == 1
    evicted = table.pop_ended()
    assert reasons(evicted) == ["emergency"] * 5 and table.evictions["emergency"] == 5
    assert len(table) == 96
    # Flows made in emergency mode get the emergency timeouts (4 s for new UDP).
    assert ended_at(table, 5) == [crowded] and table.emergency  # 95 flows: still above 50
    assert reasons(ended_at(table, 21)) == ["timeout"] * 95
    assert not table.emergency and len(table) == 1  # the probe's own flow
    assert table.emergency_entered == 1


def test_evicting_keeps_the_table_at_its_limit() -> None:
    table = FlowTable(config(max_flows=50))
    for i in range(500):
        table.add(u4(i / 1000, A, B, 1000 + i, 53))
        assert len(table) <= 50
    assert table.evictions["emergency"] == 450 and table.flows_created == 500


# -- first-packet buffers ---------------------------------------------------------------------------


def test_first_packets_bounded_by_count_and_bytes() -> None:
    table = FlowTable(config(first_packets=3, first_packet_bytes=60))
    packets = [u4(0, A, B, 1, 2, bytes(100)), u4(0.1, B, A, 2, 1, b"tiny"), u4(0.2, A, B, 1, 2), u4(0.3, A, B, 1, 2)]
    for p in packets:
        flow = table.add(p)
    assert flow is not None and flow.first_packets is not None
    assert [(ts, toserver, len(data)) for ts, toserver, data in flow.first_packets] == [
        (T0, True, 60), (T0 + NS // 10, False, 32), (T0 + NS // 5, True, 28),
    ]  # fmt: skip
    assert flow.first_packets[0][2] == packets[0].data[14:74]


def test_first_packets_exclude_ethernet_padding() -> None:
    table = FlowTable(config(first_packets=1))
    frame = ethernet(ip(A, B, PROTO_UDP, udp(A, B, 1, 2)), pad=True)
    flow = table.add(decode(PacketRecord(T0, 1, frame, len(frame))))
    assert flow is not None and flow.first_packets is not None and len(flow.first_packets[0][2]) == 28


def test_payload_only_buffer_keeps_the_first_packet_then_payload_carriers() -> None:
    """A TCP handshake's empty segments do not fill the buffer the model reads,
    and the early-classification hook fires once, when the buffer is full."""
    table = FlowTable(config(first_packets=3, buffer_payload_only=True))
    full: list[Flow] = []
    table.on_buffer_full = full.append
    for p in (t4(0, A, B, 40000, 443, "S"), t4(0.1, B, A, 443, 40000, "SA"), t4(0.2, A, B, 40000, 443, "A"),
              t4(0.3, A, B, 40000, 443, "PA", b"hello"), t4(0.4, B, A, 443, 40000, "A"),
              t4(0.5, B, A, 443, 40000, "PA", b"world"), t4(0.6, A, B, 40000, 443, "PA", b"more")):  # fmt: skip
        flow = table.add(p)
    assert flow is not None and flow.first_packets is not None
    assert [(toserver, data[-5:]) for _, toserver, data in flow.first_packets] == [
        (True, flow.first_packets[0][2][-5:]), (True, b"hello"), (False, b"world")]  # fmt: skip
    assert full == [flow]


def test_first_packets_off() -> None:
    table = FlowTable(config(first_packets=0))
    flow = table.add(u4(0, A, B, 1, 2, b"x"))
    assert flow is not None and flow.first_packets is None


# -- fragments ---------------------------------------------------------------------------------------


def test_ipv4_fragments_join_the_flow_of_their_first_fragment() -> None:
    table = FlowTable(config())
    flow = table.add(u4(0, B, A, 53, 5000))
    whole = ipv4(A, B, PROTO_UDP, udp(A, B, 5000, 53, bytes(1000)), ident=0x4242)
    fragments = [packet(1, f) for f in ipv4_fragments(whole, 400)]
    assert [table.add(p) for p in fragments] == [flow] * 3
    assert flow is not None and (flow.pkts_toserver, flow.pkts_toclient) == (3, 1)  # B:53 is the server
    assert flow.bytes_toserver == sum(p.wire_len for p in fragments)
    assert table.fragments_unmatched == 0 and len(table) == 1


def test_unmatched_fragments_are_counted() -> None:
    table = FlowTable(config())
    whole = ipv4(A, B, PROTO_UDP, udp(A, B, 5000, 53, bytes(1000)), ident=1)
    first, middle, last = (packet(1, f) for f in ipv4_fragments(whole, 400))
    assert table.add(middle) is None
    table.add(first)
    table.add(last)
    assert table.add(last) is None  # the last fragment closed the train
    other_ident = ipv4(A, B, PROTO_UDP, udp(A, B, 5000, 53, bytes(1000)), ident=2)
    assert table.add(packet(2, ipv4_fragments(other_ident, 400)[2])) is None
    assert table.fragments_unmatched == 3 and len(table) == 1


def test_ipv6_fragments_join_the_flow_of_their_first_fragment() -> None:
    table = FlowTable(config())
    whole = ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 5000, 53, bytes(1000)))
    fragments = [packet(0, f) for f in ipv6_fragments(whole, 400, 0xABCDEF)]
    flows = [table.add(p) for p in fragments]
    assert flows[0] is not None and flows == [flows[0]] * 3
    assert flows[0].pkts_toserver == 3 and table.fragments_unmatched == 0


def test_ipv6_fragments_with_destination_options_in_the_fragmentable_part() -> None:
    table = FlowTable(config())
    whole = ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 5000, 53, bytes(1000)), [destination_options()])
    fragments = [packet(0, f) for f in ipv6_fragments(whole, 400, 7)]
    assert fragments[1].proto != fragments[0].proto  # the later ones name the options header
    flows = [table.add(p) for p in fragments]
    assert flows[0] is not None and flows == [flows[0]] * 3
    assert table.fragments_unmatched == 0


# -- ICMP and IPv6 ------------------------------------------------------------------------------------


def test_icmp_echo_request_and_reply_share_a_flow() -> None:
    table = FlowTable(config())
    request = table.add(packet(0, ipv4(A, B, PROTO_ICMP, icmp_echo(9, 1))))
    reply = table.add(packet(0.01, ipv4(B, A, PROTO_ICMP, icmp_echo(9, 1, reply=True))))
    assert request is reply and request is not None
    assert (request.client_ip, request.client_port, request.server_port) == (addr(A), 8, 0)
    assert (request.pkts_toserver, request.pkts_toclient, request.state) == (1, 1, STATE_ESTABLISHED)


def test_icmpv6_echo_and_ipv6_tcp_flows() -> None:
    table = FlowTable(config())
    ping = table.add(packet(0, ipv6(A6, B6, PROTO_ICMPV6, icmpv6_echo(A6, B6, 1, 1))))
    pong = table.add(packet(0, ipv6(B6, A6, PROTO_ICMPV6, icmpv6_echo(B6, A6, 1, 1, reply=True))))
    assert ping is pong and ping is not None and ping.pkts_toclient == 1
    syn = table.add(packet(1, ipv6(A6, B6, PROTO_TCP, tcp(A6, B6, 50000, 443, "S"))))
    table.add(packet(1.1, ipv6(B6, A6, PROTO_TCP, tcp(B6, A6, 443, 50000, "SA"))))
    table.add(packet(1.2, ipv6(A6, B6, PROTO_TCP, tcp(A6, B6, 50000, 443, "A"))))
    assert syn is not None and syn.ip_version == 6 and syn.client_ip == addr(A6)
    assert (syn.pkts_toserver, syn.pkts_toclient, syn.state) == (2, 1, STATE_ESTABLISHED)
    assert len(table) == 2


def test_ipv4_and_ipv6_flows_do_not_mix() -> None:
    table = FlowTable(config())
    table.add(u4(0, A, B, 1, 2))
    table.add(packet(0, ipv6(A6, B6, PROTO_UDP, udp(A6, B6, 1, 2))))
    assert len(table) == 2


# -- flush and identity ---------------------------------------------------------------------------------


def test_flush_ends_everything_with_shutdown() -> None:
    table = FlowTable(config(), first_flow_id=100)
    handshake(table)
    table.add(u4(0, A, B, 1, 2))
    table.add(u4(200, A, C, 3, 4))  # ends the first two by timeout
    ended = table.flush()
    assert sorted(reasons(ended)) == ["shutdown", "timeout", "timeout"]
    assert sorted(f.flow_id for f in ended) == [100, 101, 102]
    assert len(table) == 0 and list(table.flows()) == [] and table.evictions["shutdown"] == 1
    assert table.flush() == []


@pytest.mark.parametrize("seed", [0, 7])
def test_community_id_matches_the_reference(seed: int) -> None:
    table = FlowTable(config(community_id_seed=seed))
    cid = communityid.CommunityID(seed)
    cases = [
        (t4(0, B, A, 80, 40000, "SA"), communityid.FlowTuple.make_tcp(A, B, 40000, 80)),
        (u4(0, A6, B6, 5353, 53), communityid.FlowTuple.make_udp(A6, B6, 5353, 53)),
        (packet(0, ipv4(B, A, PROTO_ICMP, icmp_echo(reply=True))), communityid.FlowTuple.make_icmp(B, A, 0, 0)),
        (packet(0, ipv6(A6, B6, PROTO_ICMPV6, icmpv6_echo(A6, B6))), communityid.FlowTuple.make_icmp6(A6, B6, 128, 0)),
    ]
    for pkt, tpl in cases:
        flow = table.add(pkt)
        assert flow is not None and flow.community_id == cid.calc(tpl)


# -- memory ----------------------------------------------------------------------------------------------


def test_memory_per_udp_flow_without_first_packets() -> None:
    n = 20_000
    server = addr(B)  # packed addresses: building 20,000 packets stays fast
    packets = [u4(i / 1000, bytes((10, i >> 8, i & 255, 1)), server, 1024 + i, 53) for i in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = FlowTable(config(first_packets=0))
        for p in packets:
            table.add(p)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(table) == n
    per_flow = grown / n
    print(f"flow table: {per_flow:.0f} bytes per UDP flow")
    assert per_flow <= 1024
