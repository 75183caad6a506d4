"""Packets in, flows out: decoding and flow tracking with their counters.

Pure (no I/O): the replay command and the live pipeline both feed it
records from a capture source and take the ended flows. ``feed_batch``
decodes a batch at once, in Rust where the compiled hot path is built
(:mod:`netgptd.hotpath`), else with the Python decoder; both give the same
packets and counters (tests/test_hotpath.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Sequence

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP, Packet
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow, FlowTable
from netgptd.hotpath import engine as choose_engine


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
        self._batch_decoder = None
        if self.engine == "compiled":
            from netgptd.hotpath.decode import BatchDecoder

            self._batch_decoder = BatchDecoder()

    def feed(self, record: PacketRecord) -> None:
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

    def decoded(self, records: Sequence[PacketRecord]) -> Iterator[Packet]:
        """Count a batch of records and yield the packets to track, decoded in one call where the compiled
        engine runs (the caller adds each to ``flows``: per packet, so flows end exactly as with ``feed``)."""
        if self._batch_decoder is None:
            for record in records:
                self.packets += 1
                self.bytes += record.orig_len
                try:
                    yield decode(record)
                except DecodeError as exc:
                    self.decode_errors[exc.reason] += 1
                except NotIP as exc:
                    self.skipped[exc.reason] += 1
            return
        self.packets += len(records)
        self.bytes += sum(record.orig_len for record in records)
        for item in self._batch_decoder.decode(records):
            if item.__class__ is Packet:
                yield item  # type: ignore[misc]
            elif item.__class__ is DecodeError:
                self.decode_errors[item.reason] += 1  # type: ignore[union-attr]
            else:
                self.skipped[item.reason] += 1  # type: ignore[union-attr]

    def feed_batch(self, records: Sequence[PacketRecord]) -> None:
        """``feed`` each record of a batch."""
        add = self.flows.add
        for packet in self.decoded(records):
            add(packet)

    def pop_ended(self) -> list[Flow]:
        return self.flows.pop_ended()

    def flush(self) -> list[Flow]:
        return self.flows.flush()

    def stats(self) -> dict[str, object]:
        """The ``stats`` object of the closing EVE stats event."""
        table = self.flows
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "decode_errors": dict(sorted(self.decode_errors.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "flows": table.flows_created,
            "active_flows": table.active,
            "evictions": dict(table.evictions),
            "emergency_entered": table.emergency_entered,
            "fragments_unmatched": table.fragments_unmatched,
            "engine": self.engine,
            "hotpath_fallback": int(self.engine_fallback),
            "hotpath_panics": self._batch_decoder.panics if self._batch_decoder is not None else 0,
        }
