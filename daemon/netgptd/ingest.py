"""Packets in, flows out: decoding and flow tracking with their counters.

Pure (no I/O): the replay command and the live pipeline both feed it
records from a capture source and take the ended flows. With the compiled
engine (:mod:`netgptd.hotpath`), decoding and the flow table run in Rust, a
batch of records per call; the Python decoder and flow table are the
reference, and both give the same flows and counters (tests/test_hotpath.py).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable, Sequence

from netgptd.capture.pcap_format import CaptureFormatError
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow, FlowTable
from netgptd.hotpath import engine as choose_engine

if TYPE_CHECKING:
    from netgptd.hotpath.flows import CompiledFlowTable
    from netgptd.hotpath.parser import NativeCaptureParser


class Ingest:
    """Counts every record, decodes it, and tracks its flow."""

    def __init__(self, flow_config: FlowConfig | None = None, first_flow_id: int = 1, engine: str = "auto") -> None:
        self.flows = FlowTable(flow_config, first_flow_id)
        self.packets = 0
        self.bytes = 0
        self.decode_errors: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.engine = choose_engine(engine)
        self.engine_fallback = engine == "auto" and self.engine == "python"  # wanted compiled, not built
        self._compiled: CompiledFlowTable | None = None
        if self.engine == "compiled":
            from netgptd.hotpath.flows import CompiledFlowTable

            self.flows = self._compiled = CompiledFlowTable(flow_config, first_flow_id)  # type: ignore[assignment]

    def feed(self, record: PacketRecord) -> None:
        if self._compiled is not None:
            self.feed_batch([record])
            return
        self.packets += 1
        self.bytes += record.orig_len
        try:
            packet = decode(record)
        except DecodeError as exc:
            self.decode_errors[exc.reason] += 1
            return
        except NotIP as exc:
            self.skipped[exc.reason] += 1
            return
        self.flows.add(packet)

    def feed_batch(self, records: Sequence[PacketRecord], on_ended: Callable[[list[Flow]], None] | None = None) -> None:
        """``feed`` each record of a batch; with ``on_ended``, hand it the flows ended so far after each
        packet (Python engine) or after the batch (compiled engine, where the whole batch is one call)."""
        if self._compiled is not None:
            self.packets += len(records)
            self.bytes += sum(record.orig_len for record in records)
            self._compiled.feed(records)
            if on_ended is not None and self._compiled.ended:
                on_ended(self.pop_ended())
            return
        table = self.flows
        for record in records:
            self.feed(record)
            if on_ended is not None and table.ended:
                on_ended(self.pop_ended())

    def feed_capture(self, parser: NativeCaptureParser, data: bytes,
                     on_ended: Callable[[list[Flow]], None] | None = None) -> None:  # fmt: skip
        """Compiled engine: capture bytes straight into the flow table (no record becomes a Python object)."""
        assert self._compiled is not None
        try:
            n, wire = parser.feed_table(data, self._compiled)
        except CaptureFormatError as exc:
            n, wire = exc.fed  # type: ignore[attr-defined]
            self.packets, self.bytes = self.packets + n, self.bytes + wire
            raise
        self.packets, self.bytes = self.packets + n, self.bytes + wire
        if on_ended is not None and self._compiled.ended:
            on_ended(self.pop_ended())

    def pop_ended(self) -> list[Flow]:
        return self.flows.pop_ended()

    def flush(self) -> list[Flow]:
        return self.flows.flush()

    def stats(self) -> dict[str, object]:
        """The ``stats`` object of the closing EVE stats event."""
        table = self.flows
        errors, skipped = self._compiled.decode_counts() if self._compiled is not None else (self.decode_errors,
                                                                                             self.skipped)  # fmt: skip
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "decode_errors": dict(sorted(errors.items())),
            "skipped": dict(sorted(skipped.items())),
            "flows": table.flows_created,
            "active_flows": table.active,
            "evictions": dict(table.evictions),
            "emergency_entered": table.emergency_entered,
            "fragments_unmatched": table.fragments_unmatched,
            "engine": self.engine,
            "hotpath_fallback": int(self.engine_fallback),
            "hotpath_panics": self._compiled.panics if self._compiled is not None else 0,
        }
