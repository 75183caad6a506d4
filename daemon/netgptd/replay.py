"""``netgptd replay``: capture files through decoder and flow table into EVE.

Each file is its own capture: flows do not span files, and every file's
remaining flows are flushed (reason ``shutdown``) when it ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import structlog
from tqdm import tqdm

from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.capture.records import CaptureStats, PacketRecord
from netgptd.classify import ClassificationStage, VerdictSource, classifiable
from netgptd.eve import flow_event, stats_event
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow
from netgptd.ingest import Ingest

log = structlog.get_logger(__name__)

EventSink = Callable[[dict], None]
BatchSink = Callable[[list[dict]], None]
BATCH = 512  # ended flows handed on together (a plugin call per batch, not per flow)
RECORD_BATCH = 512  # records decoded at once


@dataclass
class ReplayResult:
    ingest: Ingest
    failed_files: list[str] = field(default_factory=list)
    truncated_files: list[str] = field(default_factory=list)
    capture_drops: Counter[str] = field(default_factory=Counter)
    last_ts_ns: int = 0


def _with_progress(records: Iterator[PacketRecord], bar: tqdm) -> Iterator[PacketRecord]:
    """Advance ``bar`` by the bytes read, in steps (a per-packet update costs too much).

    A record's bytes plus 16 is the classic pcap record; pcapng blocks are
    larger, so this falls short of the file's size, and the caller moves
    the bar to each file's end when that file is done.
    """
    pending = 0
    for record in records:
        pending += len(record.data) + 16
        if pending > 1 << 20:
            bar.update(pending)
            pending = 0
        yield record
    bar.update(pending)


def read_file(ingest: Ingest, source: PcapFileSource, emit: Callable[[list[Flow]], None],
              bar: tqdm | None = None) -> None:  # fmt: skip
    """Every record of ``source`` through ``ingest``, ended flows to ``emit`` as they end; ``bar`` follows the
    bytes read. The compiled engine takes the file's bytes straight into Rust: no record becomes an object."""
    if ingest.engine == "compiled":
        source.feed(_fed(ingest, source, emit, bar))
        return
    records = source.packets()
    for batch in _batches(_with_progress(records, bar) if bar is not None else records):
        ingest.feed_batch(batch, emit)


def _fed(ingest: Ingest, source: PcapFileSource, emit: Callable[[list[Flow]], None],
         bar: tqdm | None) -> Callable[[bytes], tuple[int, int]]:  # fmt: skip
    """The compiled engine's consumer of a file's chunks (``PcapFileSource.feed``)."""

    def consume(data: bytes) -> tuple[int, int]:
        packets, wire = ingest.packets, ingest.bytes
        ingest.feed_capture(source.parser, data, emit)  # type: ignore[arg-type]
        if bar is not None:
            bar.update(len(data))
        return ingest.packets - packets, ingest.bytes - wire

    return consume


def _batches(records: Iterator[PacketRecord], size: int = RECORD_BATCH) -> Iterator[list[PacketRecord]]:
    """Batches of ``size`` records; a read error mid-file still hands on the records before it."""
    batch: list[PacketRecord] = []
    try:
        for record in records:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
    except CaptureFileError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def _count_drops(total: Counter[str], stats: CaptureStats) -> None:
    """Add the drops a capture recorded (pcapng statistics blocks) where it knows them."""
    if stats.dropped_kernel is not None:
        total["kernel"] += stats.dropped_kernel
    if stats.dropped_interface is not None:
        total["interface"] += stats.dropped_interface


def replay(
    paths: Iterable[str | Path],
    sink: EventSink,
    flow_config: FlowConfig | None = None,
    progress: bool = False,
    classifier: VerdictSource | None = None,
    alert_confidence: float = 0.9,
    first_flow_id: int = 1,
    batch_sink: BatchSink | None = None,
    finish: Callable[[], None] | None = None,
    engine: str = "auto",
) -> ReplayResult:
    """Replay capture files; every ended flow goes to ``sink`` as an EVE event.

    With a ``classifier``, flows carry the model's verdict and attacks above
    ``alert_confidence`` also give alert events. Flows are numbered from
    ``first_flow_id`` (:mod:`netgptd.flow_ids`); ``engine`` picks the record
    parser, decoder and flow table (:mod:`netgptd.hotpath`). An unreadable file or one
    that is not a capture is listed in ``failed_files``; the others are
    still processed. With a ``batch_sink``, flow events go to it a batch at a time, in order, rather than
    one by one to ``sink``; ``finish`` is called once every flow went out, before the closing stats event.
    """
    result = ReplayResult(Ingest(flow_config, first_flow_id, engine))
    ingest = result.ingest
    stage = ClassificationStage(classifier, sink, alert_confidence=alert_confidence) if classifier else None
    if stage is not None:
        ingest.flows.on_buffer_full = stage.buffer_full
    paths = [Path(p) for p in paths]
    sizes = [p.stat().st_size if p.is_file() else 0 for p in paths]
    bar = tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="replay", disable=not progress)

    unclassified: Counter[str] = Counter()  # flows the model gets no look at, by reason (as in run)

    pending: list[Flow] = []  # ended flows not yet handed on (a batch at a time to batch_sink)

    def emit(flows: list[Flow], now: bool = False) -> None:
        if stage is not None:
            unclassified["no_payload"] += sum(1 for flow in flows if not classifiable(flow))
            stage.ended(flows)
            return
        if batch_sink is None:
            for flow in flows:
                sink(flow_event(flow))
            return
        pending.extend(flows)
        ready = len(pending) if now else len(pending) - len(pending) % BATCH
        for start in range(0, ready, BATCH):
            batch_sink([flow_event(flow) for flow in pending[start : min(start + BATCH, ready)]])
        del pending[:ready]

    with bar:
        done = 0  # bytes of the files finished so far
        for path, size in zip(paths, sizes):
            source = PcapFileSource(path, ingest.engine)
            try:
                read_file(ingest, source, emit, bar if progress else None)
            except CaptureFileError as exc:
                result.failed_files.append(str(exc))  # the caller reports it, one line per file
            if source.truncated:
                with bar.external_write_mode():  # on its own line, not glued to the progress bar
                    log.warning("capture_truncated", file=str(path), detail=source.damage, packets=source.packets_read)
                result.truncated_files.append(str(path))
            _count_drops(result.capture_drops, source.stats())
            result.last_ts_ns = max(result.last_ts_ns, ingest.flows.now_ns)
            emit(ingest.flush(), now=True)
            if stage is not None:
                stage.run()
            done += size
            bar.update(done - bar.n)
    if finish is not None:
        finish()
    stats = ingest.stats()
    if stage is not None:
        stats["classified"], stats["alerts"] = stage.classified, stage.alerts
        stats["unclassified"] = {reason: n for reason, n in unclassified.items() if n}
    stats["capture_drops"] = dict(result.capture_drops)
    sink(stats_event(result.last_ts_ns, stats))
    return result

