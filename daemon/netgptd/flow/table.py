"""Bidirectional flow table: pure, with time taken from the packets.

Each flow is found under both directions of its 5-tuple, so a packet costs
one dict lookup. Timeouts use lazy timer buckets (one per second of packet
time, ordered by a heap): a packet only stamps its flow's last-seen time,
and a flow is looked at again only when its bucket comes due, where it
either ends or moves to the bucket of its real deadline. When the table is
full it enters emergency mode (Suricata's idea): shorter timeouts, and the
flows nearest their deadline are evicted to make room.

Ended flows collect in ``ended`` for the caller to take with ``pop_ended``.
A TCP flow's first payload segments also go to a login scanner
(``netgptd.flow.logins``): a few counters per flow that looks like a login
protocol, read by the flow's EVE record.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterator

from netgptd.decode.packet import NO_FRAGMENT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Packet
from netgptd.flow.community_id import community_id
from netgptd.flow.config import STATE_CLOSED, STATE_ESTABLISHED, STATE_NEW, FlowConfig, Timeouts
from netgptd.flow.direction import client_is_src
from netgptd.flow.logins import SCAN_BYTES, LoginScanner, scanner_for

NS = 1_000_000_000

REASON_TIMEOUT = "timeout"
REASON_ACTIVE = "active_timeout"
REASON_EMERGENCY = "emergency"
REASON_REUSE = "tcp_reuse"
REASON_SHUTDOWN = "shutdown"
REASONS = (REASON_TIMEOUT, REASON_ACTIVE, REASON_EMERGENCY, REASON_REUSE, REASON_SHUTDOWN)


class Flow:
    """One bidirectional flow; ``client``/``server`` follow the orientation
    chosen at creation (``netgptd.flow.direction``). For ICMP the ports hold the first packet's type/code."""

    __slots__ = (
        "flow_id", "keys", "proto", "ip_version", "client_ip", "client_port", "server_ip", "server_port",
        "start_ns", "last_ns", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
        "state", "tcp_flags_toserver", "tcp_flags_toclient", "first_packets", "timer_at", "timeouts",
        "end_reason", "seed", "verdict", "alerted", "logins",
    )  # fmt: skip

    def __init__(self, flow_id: int, keys: tuple[tuple, tuple], packet: Packet, client_is_src: bool,
                 timeouts: Timeouts, seed: int) -> None:  # fmt: skip
        self.flow_id = flow_id
        self.keys = keys
        self.proto = packet.proto
        self.ip_version = packet.ip_version
        if client_is_src:
            self.client_ip, self.client_port = packet.src, packet.sport
            self.server_ip, self.server_port = packet.dst, packet.dport
        else:
            self.client_ip, self.client_port = packet.dst, packet.dport
            self.server_ip, self.server_port = packet.src, packet.sport
        self.start_ns = self.last_ns = packet.ts_ns
        self.pkts_toserver = self.pkts_toclient = 0
        self.bytes_toserver = self.bytes_toclient = 0
        self.state = STATE_NEW
        self.tcp_flags_toserver = self.tcp_flags_toclient = 0
        self.first_packets: list[tuple[int, bool, bytes]] | None = None
        self.timer_at = 0
        self.timeouts = timeouts
        self.end_reason = ""
        self.seed = seed
        self.verdict: dict | None = None  # the model's, once classified
        self.alerted = False  # an alert was raised on this flow (EVE's flow.alerted)
        self.logins: LoginScanner | None = None  # TCP: what its payload shows of a login (None: no payload yet)

    @property
    def community_id(self) -> str:
        return community_id(self.client_ip, self.server_ip, self.proto, self.client_port, self.server_port, self.seed)

    def idle_deadline_ns(self, emergency: bool) -> int:
        return self.last_ns + int(self.timeouts.idle(self.state, emergency) * NS)

    def active_deadline_ns(self) -> int | None:
        return self.start_ns + int(self.timeouts.active * NS) if self.timeouts.active > 0 else None

    def deadline_ns(self, emergency: bool) -> int:
        idle = self.idle_deadline_ns(emergency)
        active = self.active_deadline_ns()
        return idle if active is None else min(idle, active)

    def continuation(self, flow_id: int, now_ns: int) -> Flow:
        """A fresh record for the same conversation after an active timeout."""
        nxt = Flow.__new__(Flow)
        for name in Flow.__slots__:
            setattr(nxt, name, getattr(self, name))
        nxt.flow_id = flow_id
        nxt.start_ns = nxt.last_ns = now_ns
        nxt.pkts_toserver = nxt.pkts_toclient = nxt.bytes_toserver = nxt.bytes_toclient = 0
        # A conversation with a verdict passes it on; one still waiting for it keeps its first
        # packets, so the new record can be classified in its own right.
        nxt.first_packets = None if self.verdict is not None or self.first_packets is None else list(self.first_packets)
        nxt.end_reason = ""
        nxt.logins = None if self.logins is None else self.logins.carried()
        return nxt


def _train_key(packet: Packet) -> tuple:
    """The key of a packet's fragment train. IPv6 identifies fragments by
    addresses alone, and its later fragments name the first header after the
    fragment header (maybe an extension header), not the transport protocol."""
    return (packet.src, packet.dst, packet.proto if packet.ip_version == 4 else 0, packet.frag_id)


class FlowTable:
    """Tracks flows from decoded packets. Feed ``add``; collect ``pop_ended``."""

    def __init__(self, config: FlowConfig | None = None, first_flow_id: int = 1) -> None:
        self.config = config or FlowConfig()
        self._buffer_packets = self.config.first_packets
        self._buffer_bytes = self.config.first_packet_bytes
        self._payload_only = self.config.buffer_payload_only
        self._flows: dict[tuple, Flow] = {}
        self._fragments: dict[tuple, Flow] = {}
        self._buckets: dict[int, list[Flow]] = {}
        self._bucket_heap: list[int] = []
        self._ids = itertools.count(first_flow_id)
        self._now_s = -1
        self.now_ns = 0
        self.active = 0
        self.emergency = False
        self.ended: list[Flow] = []
        # Called once when a flow's first-packet buffer fills: where early classification hooks in.
        self.on_buffer_full: Callable[[Flow], None] | None = None
        self.flows_created = 0
        self.evictions: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.emergency_entered = 0
        self.fragments_unmatched = 0

    # -- feeding -------------------------------------------------------------

    def add(self, packet: Packet) -> Flow | None:
        """Account one packet; returns its flow (None for an unmatched fragment)."""
        ts = packet.ts_ns
        if ts > self.now_ns:
            self.advance(ts)
        if packet.l4_off < 0:
            return self._add_fragment(packet)
        proto = packet.proto
        if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            key = (packet.src, packet.dst, 0, 0, proto)
        else:
            key = (packet.src, packet.dst, packet.sport, packet.dport, proto)
        flow = self._flows.get(key)
        if flow is None:
            flow = self._create(packet, key)
        elif proto == PROTO_TCP and flow.state == STATE_CLOSED and packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
            self._end(flow, REASON_REUSE)
            flow = self._create(packet, key)
        toserver = packet.src == flow.client_ip and (packet.sport == flow.client_port or proto == PROTO_ICMP or proto == PROTO_ICMPV6)
        self._account(flow, packet, toserver)
        if packet.frag_more and packet.frag_id != NO_FRAGMENT:
            self._remember_fragment_train(packet, flow)
        return flow

    def advance(self, now_ns: int) -> None:
        """Move the table's clock forward (a packet, or a live capture's quiet spell): due flows end."""
        if now_ns <= self.now_ns:
            return
        self.now_ns = now_ns
        if now_ns // NS > self._now_s:
            self._now_s = now_ns // NS
            self._expire()

    def set_buffers(self, first_packets: int, first_packet_bytes: int, payload_only: bool) -> None:
        """Buffer what a new model reads (after a reload); flows already buffering keep what they have."""
        self._buffer_packets, self._buffer_bytes, self._payload_only = first_packets, first_packet_bytes, payload_only

    def _account(self, flow: Flow, packet: Packet, toserver: bool) -> None:
        if packet.ts_ns > flow.last_ns:
            flow.last_ns = packet.ts_ns
        if toserver:
            flow.pkts_toserver += 1
            flow.bytes_toserver += packet.wire_len
            flow.tcp_flags_toserver |= packet.tcp_flags
        else:
            flow.pkts_toclient += 1
            flow.bytes_toclient += packet.wire_len
            flow.tcp_flags_toclient |= packet.tcp_flags
        state = flow.state
        if state != STATE_CLOSED:
            if flow.proto == PROTO_TCP:
                if packet.tcp_flags & TCP_RST or (flow.tcp_flags_toserver & flow.tcp_flags_toclient & TCP_FIN):
                    flow.state = STATE_CLOSED
                    self._reschedule(flow)
                elif state == STATE_NEW and flow.pkts_toclient and flow.pkts_toserver and not packet.tcp_flags & TCP_SYN:
                    flow.state = STATE_ESTABLISHED
                    self._reschedule(flow)
            elif state == STATE_NEW and flow.pkts_toclient and flow.pkts_toserver:
                flow.state = STATE_ESTABLISHED
                self._reschedule(flow)
        if flow.proto == PROTO_TCP and 0 <= packet.payload_off < packet.end:
            scanner = flow.logins
            if scanner is None or scanner.budget > 0:  # most segments: a flow that is no login, or read enough
                self._scan_login(flow, packet, toserver)
        buffered = flow.first_packets
        if (buffered is not None and len(buffered) < self._buffer_packets
                and (packet.payload_off < packet.end or not buffered or not self._payload_only)):  # fmt: skip
            end = min(packet.end, packet.l3_off + self._buffer_bytes)
            buffered.append((packet.ts_ns, toserver, packet.data[packet.l3_off : end]))
            if len(buffered) == self._buffer_packets and self.on_buffer_full is not None:
                self.on_buffer_full(flow)

    @staticmethod
    def _scan_login(flow: Flow, packet: Packet, toserver: bool) -> None:
        """Hand a TCP payload segment to the flow's login scanner (``netgptd.flow.logins``), the first one made
        from the flow's first segment."""
        scanner = flow.logins
        payload = packet.data[packet.payload_off : min(packet.end, packet.payload_off + SCAN_BYTES)]
        if scanner is None:
            scanner = flow.logins = scanner_for(flow.server_port, toserver, payload)
            if scanner.budget <= 0:
                return
        scanner.feed(toserver, payload)

    def _create(self, packet: Packet, key: tuple) -> Flow:
        if self.active >= self.config.max_flows:
            self._make_room()
        payload = packet.data[packet.payload_off : packet.end]
        src_is_client = client_is_src(packet.proto, packet.tcp_flags, packet.sport, packet.dport, payload)
        rkey = (key[1], key[0], key[3], key[2], key[4])
        flow = Flow(next(self._ids), (key, rkey), packet, src_is_client,
                    self.config.timeouts_for(packet.proto), self.config.community_id_seed)  # fmt: skip
        if self._buffer_packets > 0:
            flow.first_packets = []
        self._flows[key] = flow
        self._flows[rkey] = flow
        self.active += 1
        self.flows_created += 1
        self._schedule(flow, flow.deadline_ns(self.emergency))
        return flow

    # -- IP fragments ----------------------------------------------------------

    def _remember_fragment_train(self, packet: Packet, flow: Flow) -> None:
        trains = self._fragments
        trains[_train_key(packet)] = flow
        if len(trains) > self.config.max_fragment_trains:
            del trains[next(iter(trains))]  # oldest train first

    def _add_fragment(self, packet: Packet) -> Flow | None:
        key = _train_key(packet)
        flow = self._fragments.get(key)
        if flow is None or flow.end_reason:
            self.fragments_unmatched += 1
            return None
        if not packet.frag_more:
            del self._fragments[key]  # the last fragment closes the train
        self._account(flow, packet, packet.src == flow.client_ip)
        return flow

    # -- timers ----------------------------------------------------------------

    def _schedule(self, flow: Flow, deadline_ns: int) -> None:
        second = -(-deadline_ns // NS)  # ceil: a bucket is due once its second has passed
        flow.timer_at = second
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [flow]
            heapq.heappush(self._bucket_heap, second)
        else:
            bucket.append(flow)

    def _reschedule(self, flow: Flow) -> None:
        """Move a flow to an earlier bucket after its timeout shrank."""
        deadline = flow.deadline_ns(self.emergency)
        if -(-deadline // NS) < flow.timer_at:
            self._schedule(flow, deadline)

    def _expire(self) -> None:
        heap, buckets, now_s = self._bucket_heap, self._buckets, self._now_s
        while heap and heap[0] <= now_s:
            second = heapq.heappop(heap)
            for flow in buckets.pop(second):
                if flow.end_reason or flow.timer_at != second:
                    continue  # ended already, or moved to an earlier bucket
                active_deadline = flow.active_deadline_ns()
                if flow.idle_deadline_ns(self.emergency) <= self.now_ns:
                    self._end(flow, REASON_TIMEOUT)
                elif active_deadline is not None and active_deadline <= self.now_ns:
                    self._restart(flow)
                else:
                    self._schedule(flow, flow.deadline_ns(self.emergency))
        if self.emergency and self.active < self.config.max_flows * self.config.emergency_recovery:
            self.emergency = False

    def _restart(self, flow: Flow) -> None:
        """Active timeout: report the flow so far and carry on in a new record."""
        nxt = flow.continuation(next(self._ids), self.now_ns)
        for key in flow.keys:
            self._flows[key] = nxt
        for key, owner in self._fragments.items():
            if owner is flow:
                self._fragments[key] = nxt
        flow.end_reason = REASON_ACTIVE
        self.evictions[REASON_ACTIVE] += 1
        self.ended.append(flow)
        self._schedule(nxt, nxt.deadline_ns(self.emergency))

    def _make_room(self) -> None:
        """Table full: enter emergency mode and evict the flows nearest their deadline."""
        if not self.emergency:
            self.emergency = True
            self.emergency_entered += 1
        target = self.config.max_flows - max(1, int(self.config.max_flows * self.config.emergency_evict))
        heap, buckets = self._bucket_heap, self._buckets
        while self.active > target and heap:
            second = heap[0]
            bucket = buckets[second]
            while bucket and self.active > target:
                flow = bucket.pop()
                if not flow.end_reason and flow.timer_at == second:
                    self._end(flow, REASON_EMERGENCY)
            if not bucket:
                heapq.heappop(heap)
                del buckets[second]

    # -- ending ----------------------------------------------------------------

    def _end(self, flow: Flow, reason: str) -> None:
        flow.end_reason = reason
        for key in flow.keys:
            if self._flows.get(key) is flow:
                del self._flows[key]
        self.active -= 1
        self.evictions[reason] += 1
        self.ended.append(flow)

    def pop_ended(self) -> list[Flow]:
        ended, self.ended = self.ended, []
        return ended

    def flush(self) -> list[Flow]:
        """End every flow still tracked (end of input, shutdown) and return all ended."""
        for flow in list(self.flows()):
            self._end(flow, REASON_SHUTDOWN)
        self._buckets.clear()
        self._bucket_heap.clear()
        self._fragments.clear()
        return self.pop_ended()

    def flows(self) -> Iterator[Flow]:
        """Each tracked flow once."""
        seen: set[int] = set()
        for flow in self._flows.values():
            if flow.flow_id not in seen:
                seen.add(flow.flow_id)
                yield flow

    def __len__(self) -> int:
        return self.active
