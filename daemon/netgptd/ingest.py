"""Packets in, flows out: decoding and flow tracking with their counters.

Pure (no I/O): the replay command and the live pipeline both feed it
records from a capture source and take the ended flows.
"""

from __future__ import annotations

from collections import Counter

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow, FlowTable


class Ingest:
    """Counts every record, decodes it, and tracks its flow."""

    def __init__(self, flow_config: FlowConfig | None = None, first_flow_id: int = 1) -> None:
        self.flows = FlowTable(flow_config, first_flow_id)
        self.packets = 0
        self.bytes = 0
        self.decode_errors: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

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
        }
