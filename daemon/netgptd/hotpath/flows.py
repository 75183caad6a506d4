"""The flow table in Rust (``hotpath/src/flow.rs``) behind :class:`netgptd.flow.table.FlowTable`'s interface.

Records go in a batch at a time (decoded and tracked in Rust); what comes back is what Python needs:
``Flow`` records of ended flows (``ended``/``pop_ended``), flows whose first-packet buffer filled (the
``on_buffer_full`` hook), and the payload segments of cleartext login flows, fed to the same
:class:`netgptd.flow.logins.LoginScanner` the Python table uses. A flow handed to the hook is the same
object that ends later, so a verdict set on it is in its record.

One difference from the Python table, with a model only: the hook runs after the batch, so a verdict
given inside the hook reaches the table after the batch. A flow whose active timeout came in the same
batch as its full buffer continues with its first packets (Python: with its verdict and no packets).
"""

from __future__ import annotations

import ctypes
import struct
from array import array
from collections import Counter
from typing import Callable, Sequence

from netgptd.capture.records import PacketRecord
from netgptd.flow.config import FlowConfig, Timeouts
from netgptd.flow.logins import LoginScanner, shared_scanner
from netgptd.flow.table import REASONS, Flow
from netgptd.hotpath.decode import DECODE_ERRORS, NOT_IP
from netgptd.hotpath.native import library

EV_BUFFER_FULL, EV_ENDED, EV_LOGIN_NEW, EV_LOGIN_SEGMENT, EV_CONTINUED = 1, 2, 3, 4, 5
SHARED = ("", "ssh", "rdp", "imaps", "pop3s", "smtps", "ftps")  # flow.rs SHARED
CLEARTEXT = ("telnet", "http", "smtp", "ftp", "ftp/smtp", "pop3", "imap")  # flow.rs CLEARTEXT
_flow_head = struct.Struct("<IQ8BHH16s16sQqQq4QI")
_buffered_head = struct.Struct("<16sBI")
_u32 = struct.Struct("<I").unpack_from
_segment_head = struct.Struct("<IBI").unpack_from
_NO_BUFFER = 0xFFFFFFFF
_END_REASONS = ("", *REASONS)
_MASK64 = (1 << 64) - 1
_SHARED_SCANNERS = tuple(shared_scanner(name) for name in SHARED)
_verdict_slot = Flow.__dict__["verdict"]


class LiveFlow(Flow):
    """A flow handed to the hook while live: setting its verdict tells the compiled table, so that an active
    timeout's continuation passes the verdict on instead of the first packets (as ``Flow.continuation``)."""

    __slots__ = ("_table", "_slot")

    @property  # type: ignore[override]
    def verdict(self) -> dict | None:
        return _verdict_slot.__get__(self, Flow)  # type: ignore[no-any-return]

    @verdict.setter
    def verdict(self, value: dict | None) -> None:
        _verdict_slot.__set__(self, value)
        table = getattr(self, "_table", None)
        if value is not None and table is not None:
            table._verdict_given(self)


_new_flow = Flow.__new__


def _timeouts(config: FlowConfig) -> ctypes.Array:
    values = []
    for proto in (0, 6, 17, 1):  # default (any other protocol), tcp, udp, icmp: flow.rs Config::timeouts_index
        t = config.timeouts_for(proto)
        values += [t.new, t.established, t.closed, t.emergency_new, t.emergency_established, t.emergency_closed,
                   t.active]  # fmt: skip
    return (ctypes.c_double * 28)(*values)


class CompiledFlowTable:
    """Decoder and flow table in Rust; ``feed`` records, collect ``pop_ended``."""

    def __init__(self, config: FlowConfig | None = None, first_flow_id: int = 1) -> None:
        self.config = config = config or FlowConfig()
        self._lib = library()
        self.engine = self._lib.ngp_engine_new(
            _timeouts(config), config.max_flows, config.emergency_recovery, config.emergency_evict,
            config.first_packets, config.first_packet_bytes, int(config.buffer_payload_only),
            config.max_fragment_trains, first_flow_id)  # fmt: skip
        # Called when a flow's first-packet buffer fills (after its batch): where early classification hooks in.
        self.on_buffer_full: Callable[[Flow], None] | None = None
        self._live: dict[int, Flow] = {}  # slot: a live flow handed to the hook
        self._scanners: dict[int, LoginScanner] = {}  # slot: a live flow's cleartext login scanner
        self._inherited: dict[int, tuple[dict | None, bool]] = {}  # slot: a continuation's verdict and alerted
        self._timeouts: dict[int, Timeouts] = {}  # by protocol, as FlowConfig.timeouts_for says
        self._stats = (ctypes.c_uint64 * 48)()
        self._events_len = ctypes.c_size_t()
        self.ended: list[Flow] = []

    def __del__(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine:
            self._lib.ngp_engine_free(engine)

    # -- the FlowTable interface ---------------------------------------------------------

    def set_buffers(self, first_packets: int, first_packet_bytes: int, payload_only: bool) -> None:
        self._lib.ngp_engine_set_buffers(self.engine, first_packets, first_packet_bytes, int(payload_only))

    def _verdict_given(self, flow: LiveFlow) -> None:
        if self._live.get(flow._slot) is flow:  # still live (an ended flow's verdict is its record's business)
            self._lib.ngp_engine_verdict(self.engine, flow._slot, flow.flow_id)

    def feed(self, records: Sequence[PacketRecord]) -> None:
        """Decode and track a batch of records."""
        if not records:
            return
        stamps, linktypes, frames, wire_lens = list(zip(*records))[:4]
        joined = b"".join(frames)
        lens = array("q", map(len, frames))
        kinds = array("q", linktypes)
        wires = array("q", wire_lens)
        try:
            lo, hi = array("q", stamps), None
        except OverflowError:  # a hostile capture's timestamps beyond 64 bits
            lo = array("Q", (t & _MASK64 for t in stamps))
            hi = array("q", (t >> 64 for t in stamps))
        status = self._lib.ngp_engine_feed(self.engine, joined, len(joined), lens.buffer_info()[0],
                                           kinds.buffer_info()[0], lo.buffer_info()[0],
                                           hi.buffer_info()[0] if hi is not None else None, wires.buffer_info()[0],
                                           len(records))  # fmt: skip
        if status:
            raise RuntimeError("compiled flow table: frame lengths overrun the batch")  # lens come from frames
        self.take_events()

    def advance(self, now_ns: int) -> None:
        self._lib.ngp_engine_advance(self.engine, now_ns & _MASK64, now_ns >> 64)
        self.take_events()

    def pop_ended(self) -> list[Flow]:
        ended, self.ended = self.ended, []
        return ended

    def flush(self) -> list[Flow]:
        self._lib.ngp_engine_flush(self.engine)
        self.take_events()
        self._live.clear()
        self._scanners.clear()
        self._inherited.clear()
        return self.pop_ended()

    def __len__(self) -> int:
        return self.active

    # -- counters -------------------------------------------------------------------------

    def _counters(self) -> ctypes.Array:
        self._lib.ngp_engine_stats(self.engine, self._stats)
        return self._stats

    @property
    def flows_created(self) -> int:
        return self._counters()[0]

    @property
    def active(self) -> int:
        return self._counters()[1]

    @property
    def emergency_entered(self) -> int:
        return self._counters()[2]

    @property
    def fragments_unmatched(self) -> int:
        return self._counters()[3]

    @property
    def evictions(self) -> dict[str, int]:
        return dict(zip(REASONS, self._counters()[4:9]))

    @property
    def emergency(self) -> bool:
        return bool(self._counters()[9])

    @property
    def now_ns(self) -> int:
        s = self._counters()
        hi = s[11] - (1 << 64) if s[11] >> 63 else s[11]
        return (hi << 64) | s[10]

    @property
    def panics(self) -> int:
        return self._counters()[12]

    def decode_counts(self) -> tuple[Counter[str], Counter[str]]:
        """Frames that did not decode, by reason, and frames skipped (not IP), by kind."""
        s = self._counters()
        errors = Counter({reason: n for reason, n in zip(DECODE_ERRORS, s[13:39]) if n})
        skipped = Counter({reason: n for reason, n in zip(NOT_IP, s[39:47]) if n})
        unknown = s[47]
        if unknown:
            pairs = (ctypes.c_uint64 * (2 * unknown))()
            self._lib.ngp_engine_linktypes(self.engine, pairs, unknown)
            for i in range(unknown):
                skipped[f"linktype_{pairs[2 * i]}"] += pairs[2 * i + 1]
        return errors, skipped

    # -- events -----------------------------------------------------------------------------

    def take_events(self) -> None:
        """Handle what the engine reported since the last call (records, hook calls, login segments)."""
        pointer = self._lib.ngp_engine_events(self.engine, ctypes.byref(self._events_len))
        size = self._events_len.value
        if not size:
            return
        buf = ctypes.string_at(pointer, size)
        at = 0
        last: Flow | None = None  # the record an EV_CONTINUED follows
        while at < size:
            kind = buf[at]
            if kind == EV_ENDED or kind == EV_BUFFER_FULL:
                flow, slot, at = self._flow(buf, at + 1, kind == EV_ENDED, self.on_buffer_full is not None)
                if kind == EV_ENDED:
                    self.ended.append(flow)
                    last = flow
                elif self.on_buffer_full is not None:
                    self._live[slot] = flow
                    self.on_buffer_full(flow)
            elif kind == EV_LOGIN_SEGMENT:
                slot, toserver, length = _segment_head(buf, at + 1)
                start = at + 10
                self._scanners[slot].feed(bool(toserver), buf[start : start + length])
                at = start + length
            elif kind == EV_LOGIN_NEW:
                self._scanners[_u32(buf, at + 1)[0]] = LoginScanner(CLEARTEXT[buf[at + 5]])
                at += 6
            else:  # EV_CONTINUED: the conversation goes on as a new record, as Flow.continuation makes it
                slot = _u32(buf, at + 1)[0]
                at += 5
                scanner = self._scanners.get(slot)
                if scanner is not None:
                    self._scanners[slot] = scanner.carried()
                if last is not None and (last.verdict is not None or last.alerted):
                    self._inherited[slot] = (last.verdict, last.alerted)

    def _flow(self, buf: bytes, at: int, ended: bool, hooked: bool) -> tuple[Flow, int, int]:
        (slot, flow_id, proto, version, state, flags_ts, flags_tc, reason, login_kind, login_value, client_port,
         server_port, client_ip, server_ip, start, start_hi, last, last_hi, pkts_ts, pkts_tc, bytes_ts, bytes_tc,
         count) = _flow_head.unpack_from(buf, at)  # fmt: skip
        at += _flow_head.size
        buffered: list[tuple[int, bool, bytes]] | None = None
        if count != _NO_BUFFER:
            buffered = []
            for _ in range(count):
                ts, toserver, length = _buffered_head.unpack_from(buf, at)
                at += _buffered_head.size
                buffered.append((int.from_bytes(ts, "little", signed=True), bool(toserver), buf[at : at + length]))
                at += length
        flow = self._live.pop(slot, None) if ended else self._live.get(slot)
        if flow is None:
            if ended or not hooked:
                flow = _new_flow(Flow)
            else:
                flow = _new_flow(LiveFlow)
                flow._table, flow._slot = self, slot
            verdict, flow.alerted = self._inherited.pop(slot, (None, False))
            _verdict_slot.__set__(flow, verdict)
            flow.keys = ()
            flow.timer_at = 0
            flow.timeouts = self._timeouts.get(proto) or self._timeouts.setdefault(proto, self.config.timeouts_for(proto))
            flow.seed = self.config.community_id_seed
        width = 4 if version == 4 else 16
        flow.flow_id, flow.proto, flow.ip_version = flow_id, proto, version
        flow.client_ip, flow.client_port = client_ip[:width], client_port
        flow.server_ip, flow.server_port = server_ip[:width], server_port
        flow.start_ns = (start_hi << 64) + start if start_hi else start
        flow.last_ns = (last_hi << 64) + last if last_hi else last
        flow.pkts_toserver, flow.pkts_toclient, flow.bytes_toserver, flow.bytes_toclient = pkts_ts, pkts_tc, bytes_ts, bytes_tc
        flow.state, flow.tcp_flags_toserver, flow.tcp_flags_toclient = state, flags_ts, flags_tc
        flow.first_packets = buffered
        flow.end_reason = _END_REASONS[reason]
        if login_kind == 0:
            flow.logins = None
        elif login_kind == 1:
            flow.logins = _SHARED_SCANNERS[login_value]
        elif ended and reason != 2:  # an active timeout's scanner goes on (carried) with the next record
            flow.logins = self._scanners.pop(slot)
        else:
            flow.logins = self._scanners[slot]
        return flow, slot, at
