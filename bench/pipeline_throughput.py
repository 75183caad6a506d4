"""End-to-end throughput of ``netgptd run`` on the real mix, with the per-stage time split.

Workload: every capture file (.pcap, .pcapng, .cap) of the chosen corpus
collections (default ``ndpi/pcap`` and ``mining``; ``--collections`` adds
others), in sorted order; each file is one capture, as the daemon reads
it: flows never span files. Rates are of wire bytes (``orig_len``, as
``Ingest`` counts them, non-IP frames and decode errors included) and of
flow records (flows ended, active-timeout continuations included).

End to end: the real ``netgptd.pipeline.Pipeline`` runs in this process,
``asyncio.run(pipeline.run())`` once per file, one file after another,
replay speed 0, with:

- the shipped model, ``service.load_model`` on default ``Settings``
  except ``model.queue`` = the workload's flow count (so that no flow can
  go out unclassified for want of room: "fully processed"; the run checks
  it, stats ``unclassified`` must stay empty); onnxruntime CPU provider,
  ``intra_op_num_threads`` = ``settings.model.threads`` = 1, inter-op 1;
- the ``rules`` plugin and the ``eve`` plugin writing to /dev/null, both
  through ``PluginHost`` as ``netgptd run`` loads them (not ``prometheus``:
  no HTTP port is opened), plus one in-process plugin that records each
  batch's size and wall time (``netgpt_batch``, once per batch);
- one model and one plugin host per pass serve all files, as in a
  long-running sensor; a fresh ``Pipeline`` per file (flow table, batcher,
  capture pump thread, executor). A per-file run includes its start and
  its drain: at each file's end the last, partial batch waits up to
  ``model.max_wait_ms`` (20 ms) before inference, as in the daemon.

Wall time is measured over all files (``time.perf_counter``), model
loading excluded, everything else included (pipeline set-up, capture
thread, decode, flow table, batching, tokenizer + inference in the
executor, verdicts, EVE events, rules, the EVE file's final flush). CPU time
(``time.process_time``, every thread) is printed next to it: with two
cores, CPU/wall > 1 means the model's executor thread ran beside the loop
(onnxruntime releases the GIL), < 1 means the pipeline waited.

Rows of the end-to-end table, in one run, interleaved within each repeat:
per-file with max_batch 256 (the default) and 64, verdict cache off and
on (``model.verdict_cache`` = 4096, by server address/port/protocol, cold
at the start of each pass, kept across the files of a pass); per-file
``--no-model`` (decode + flows + rules + EVE); and "continuous": the same
files back to back as ONE capture source in ONE pipeline run, each file
shifted in time to start an hour after the previous one ended (longer
than every idle and active timeout, so every flow of a file ends before
the next file's first packet: flows still never span files). The
continuous rows show a sensor's sustained rate without per-run start and
drain; the shift costs one tuple per packet in the capture thread.

Per-stage split, on the same files in the same run, each timed alone in
the main thread (no asyncio, no other thread):

- read: ``PcapFileSource(path).packets()``, the project's pcap/pcapng parser;
- read + decode: plus ``decode`` of every record;
- read + decode + flows: ``Ingest`` (decode + ``FlowTable``) with the
  model's first-packet buffers, ended flows popped, flushed at file end;
- tokenizer alone: ``encode_flow`` of every flow's buffered first packets;
- inference alone: ``ModelSession.classify`` on those pre-tokenised rows
  (padding + onnxruntime + softmax), in the batch sizes the default
  end-to-end row actually ran (recorded per batch), and in full batches
  of 256 and of 64 for comparison;
- EVE serialisation: ``flow_event`` + compact JSON line for every flow
  (each carrying a model verdict), written to /dev/null;
- plugins: ``PluginHost.emit`` of every flow event to rules + EVE file
  (includes the EVE serialisation).

Each stage is shown as seconds and as the Mb/s (and flows/s) the workload
would go through at that speed, so the slowest stage is plain to see. The
pipeline overlaps inference (executor thread) with decoding (loop thread)
and reading (capture thread) while they all contend for one GIL and two
cores, so stage times need not add up to the end-to-end time: their sum
is printed next to the measured totals.

Every measurement is repeated ``--repeat`` times, the fastest kept (other
work on a shared machine only ever slows a pass down). Also printed: CPU
model, core count and affinity, load average before and after, a Python
empty-loop ns/iteration speed reference, peak RSS of this process (two
model sessions alive at once, so more than a daemon's). The target is
1 Gb/s of the real mix. A benchmark, not a test.

    .venv/bin/python bench/pipeline_throughput.py [--corpus DIR] [--collections ndpi mining ...]
                                                  [--repeat 2] [--quick] [--every K]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
import structlog
from tqdm import tqdm

from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.capture.records import CaptureStats, PacketRecord
from netgptd.config import Settings
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.eve import flow_event
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import REASON_ACTIVE, Flow
from netgptd.ingest import Ingest
from netgptd.model.session import ModelSession
from netgptd.model.tokenizer import TokenizerConfig, encode_flow
from netgptd.pipeline import Pipeline
from netgptd.plugin_host import PluginHost, SensorContext, hookimpl
from netgptd.sdnotify import Notifier
from netgptd.service import load_model
from netgptd_plugins.eve_file import EveFilePlugin
from machine import cpu_model, empty_loop_ns  # bench/ is the script's folder

CORPUS = Path(os.environ.get("NETGPT_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
COLLECTIONS = ("ndpi", "mining")
SUFFIXES = (".pcap", ".pcapng", ".cap")
TARGET_BPS = 1e9  # 1 Gb/s of the real mix
EVE_PATH = os.devnull
GAP_NS = 3600 * 1_000_000_000  # continuous mode: longer than every idle (600 s) and active (1800 s) timeout
STREAM_START_NS = 1_600_000_000 * 1_000_000_000
QUICK_EVERY = 10


# -- machine -----------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def progress(desc: str, total: int) -> tqdm:
    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False, disable=not sys.stderr.isatty())


# -- workload ----------------------------------------------------------------------


@dataclasses.dataclass
class Capture:
    path: Path
    packets: int
    bytes: int
    first_ns: int | None
    last_ns: int | None


def collection_dir(corpus: Path, name: str) -> Path:
    """``ndpi`` means ``ndpi/pcap`` (its captures; ``labels`` beside them)."""
    folder = corpus / name
    return folder / "pcap" if (folder / "pcap").is_dir() else folder


def capture_paths(corpus: Path, collections: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for name in collections:
        folder = collection_dir(corpus, name)
        if not folder.is_dir():
            sys.exit(f"no collection {name!r} at {folder}")
        paths += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return paths


def scan(paths: Sequence[Path]) -> tuple[list[Capture], list[str]]:
    """Packets, wire bytes and time span of each file (unreadable files are left out, named)."""
    captures: list[Capture] = []
    skipped: list[str] = []
    for path in paths:
        packets = wire = 0
        first = last = None
        try:
            for record in PcapFileSource(path).packets():
                packets += 1
                wire += record.orig_len
                ts = record.ts_ns
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
        except CaptureFileError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        captures.append(Capture(path, packets, wire, first, last))
    return captures, skipped


class CorpusStream:
    """The captures back to back as one source, each shifted to start ``GAP_NS`` after the previous ended."""

    live = False
    name = "pcap:corpus-stream"

    def __init__(self, captures: Sequence[Capture]) -> None:
        self.captures = [c for c in captures if c.first_ns is not None]

    def packets(self) -> Iterator[PacketRecord]:
        new = tuple.__new__
        start = STREAM_START_NS
        for capture in self.captures:
            assert capture.first_ns is not None and capture.last_ns is not None
            shift = start - capture.first_ns
            for ts, linktype, data, orig_len, interface in PcapFileSource(capture.path).packets():
                yield new(PacketRecord, (ts + shift, linktype, data, orig_len, interface))
            start = capture.last_ns + shift + GAP_NS

    def stats(self) -> CaptureStats:
        return CaptureStats(None, None, None)

    def close(self) -> None:
        pass


# -- end to end --------------------------------------------------------------------


class BatchRecorder:
    """In-process plugin: each model batch's size and wall time (tokenizer + inference + verdicts)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds = 0.0

    @hookimpl
    def netgpt_batch(self, size: int, seconds: float) -> None:
        self.sizes.append(size)
        self.seconds += seconds


@dataclasses.dataclass(frozen=True)
class Variant:
    mode: str  # "per-file" or "continuous"
    model: bool
    max_batch: int = 256
    cache: int = 0

    @property
    def label(self) -> str:
        if not self.model:
            return f"{self.mode:<11} --no-model"
        return f"{self.mode:<11} batch {self.max_batch:<4} cache {'off' if not self.cache else self.cache}"


@dataclasses.dataclass
class Pass:
    variant: Variant
    wall_s: float
    cpu_s: float
    packets: int
    bytes: int
    flows: int  # flow records (flows created + active-timeout continuations)
    classified: int
    unclassified: Counter[str]
    model_alerts: int
    batch_sizes: list[int]
    batch_s: float
    cache_hits: int
    cache_misses: int
    load_s: float


def settings_for(variant: Variant, queue: int) -> Settings:
    base = Settings()
    model = dataclasses.replace(base.model, enabled=variant.model, max_batch=variant.max_batch,
                                verdict_cache=variant.cache, queue=max(base.model.queue, queue))  # fmt: skip
    plugins = {"rules": {}, "eve": {"path": EVE_PATH, "append": False}}
    return dataclasses.replace(base, model=model, plugins=plugins)


def run_pass(variant: Variant, captures: Sequence[Capture], queue: int) -> Pass:
    settings = settings_for(variant, queue)
    started = time.perf_counter()
    model = load_model(settings)
    load_s = time.perf_counter() - started
    plugins = PluginHost(settings.plugins)
    recorder = BatchRecorder()
    plugins.add(recorder, "bench-batches")
    context = SensorContext(site="bench", sensor="bench", state_dir=Path("."), model=dict(model.info) if model else {},
                            emit=plugins.emit)  # fmt: skip
    asyncio.run(plugins.start(context))
    notifier = Notifier(None)
    if variant.mode == "continuous":
        runs: list[tuple[Settings, Any]] = [(settings_with_source(settings, CorpusStream.name), CorpusStream(captures))]
    else:
        runs = [(settings_with_source(settings, f"pcap:{c.path}"), c.path) for c in captures]
    packets = wire = flows = classified = alerts = 0
    unclassified: Counter[str] = Counter()
    bar = progress(variant.label, len(runs))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for run_settings, what in runs:
        source = what if isinstance(what, CorpusStream) else PcapFileSource(what)
        pipeline = Pipeline(run_settings, source, plugins, model, notifier)
        asyncio.run(pipeline.run())
        source.close()
        ingest = pipeline.ingest
        packets += ingest.packets
        wire += ingest.bytes
        flows += ingest.flows.flows_created + ingest.flows.evictions[REASON_ACTIVE]
        classified += pipeline.classified
        alerts += pipeline.alerts
        unclassified += pipeline.unclassified
        bar.update()
    plugins.close()  # the EVE file's flush and close
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    bar.close()
    classifier = model.classifier if model else None
    return Pass(variant, wall, cpu, packets, wire, flows, classified, unclassified, alerts, recorder.sizes,
                recorder.seconds, getattr(classifier, "cache_hits", 0), getattr(classifier, "cache_misses", 0),
                load_s)  # fmt: skip


def settings_with_source(settings: Settings, source: str) -> Settings:
    return dataclasses.replace(settings, capture=dataclasses.replace(settings.capture, source=source))


# -- stages ------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def stage_read(captures: Sequence[Capture]) -> int:
    n = 0
    for c in captures:
        for _ in PcapFileSource(c.path).packets():
            n += 1
    return n


def stage_decode(captures: Sequence[Capture]) -> int:
    n = 0
    for c in captures:
        for record in PcapFileSource(c.path).packets():
            try:
                decode(record)
                n += 1
            except (DecodeError, NotIP):
                pass
    return n


def stage_ingest(captures: Sequence[Capture], config: FlowConfig) -> list[Flow]:
    ended: list[Flow] = []
    for c in captures:
        ingest = Ingest(config)
        feed, table = ingest.feed, ingest.flows
        for record in PcapFileSource(c.path).packets():
            feed(record)
            if table.ended:
                ended += table.pop_ended()
        ended += ingest.flush()
    return ended


def token_rows(flows: Sequence[Flow], tok: TokenizerConfig) -> list[list[int]]:
    return [encode_flow([(d, b) for _, d, b in f.first_packets], f.server_port, tok) for f in flows if f.first_packets]


def stage_inference(session: ModelSession, rows: Sequence[Sequence[int]], sizes: Sequence[int]) -> int:
    """``classify`` over ``rows`` in consecutive batches of ``sizes`` (cycled until every row is done)."""
    at = calls = 0
    i = 0
    while at < len(rows):
        size = sizes[i % len(sizes)]
        session.classify(rows[at : at + size])
        at += size
        i += 1
        calls += 1
    return calls


def stage_eve(flows: Sequence[Flow]) -> int:
    writer = EveFilePlugin(str(EVE_PATH), append=False)
    for flow in flows:
        writer.netgpt_event(flow_event(flow))
    writer.netgpt_close()
    return writer.out.written


def new_plugins() -> PluginHost:
    """rules + EVE file, as the end-to-end runs load them (finding the entry points is not timed)."""
    return PluginHost({"rules": {}, "eve": {"path": EVE_PATH, "append": False}})


def stage_plugins(plugins: PluginHost, flows: Sequence[Flow]) -> int:
    for flow in flows:
        plugins.emit(flow_event(flow))
    plugins.close()
    return len(flows)


def verdict_of(session: ModelSession, app_p: Any, attack_p: Any) -> dict[str, object]:
    """A verdict shaped as ``Classifier`` makes it, so flow events carry a full ``netgpt`` object."""
    bundle = session.bundle
    app, attack = int(app_p.argmax()), int(attack_p.argmax())
    return {"app": bundle.apps[app], "app_confidence": round(float(app_p[app]), 4), "attack": bundle.attacks[attack],
            "attack_confidence": round(float(attack_p[attack]), 4), "model": bundle.model_id}  # fmt: skip


# -- output ------------------------------------------------------------------------


def mbps(bits: float, seconds: float) -> float:
    return bits / seconds / 1e6 if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, metavar="DIR", help=f"corpus folder (default {CORPUS})")
    parser.add_argument("--collections", nargs="+", default=list(COLLECTIONS), metavar="NAME",
                        help="corpus collections (ndpi = ndpi/pcap; also ddos, suricata-verify, tcpdump)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2, metavar="N", help="passes per measurement, the fastest kept")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="every K-th file only (sorted order)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: every {QUICK_EVERY}th file, one pass")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    every = QUICK_EVERY if args.quick else args.every
    repeat = 1 if args.quick else max(1, args.repeat)
    load_before = load_average()

    all_paths = capture_paths(args.corpus, args.collections)
    paths = all_paths[::every]
    captures, skipped = scan(paths)
    packets = sum(c.packets for c in captures)
    wire_bytes = sum(c.bytes for c in captures)
    bits = 8 * wire_bytes
    if not captures or not packets:
        sys.exit("no packets in the chosen files")

    # The model as the daemon loads it, for the stage measurements and the workload's flow count.
    reference = load_model(settings_for(Variant("per-file", True), 0))
    assert reference is not None
    session: ModelSession = reference.classifier.session  # type: ignore[attr-defined]
    tok = session.bundle.tokenizer
    defaults = Settings()
    flow_config = dataclasses.replace(reference.flow_config, max_flows=defaults.flows.max_flows,
                                      community_id_seed=defaults.flows.community_id_seed)  # fmt: skip
    flows = stage_ingest(captures, flow_config)
    n_flows = len(flows)
    buffered = [f for f in flows if f.first_packets]
    rows = token_rows(buffered, tok)
    lengths = [len(r) for r in rows]
    queue = n_flows + 1

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable by this process); "
          f"load average before: {load_before}")  # fmt: skip
    print(f"python {platform.python_version()} empty loop: {empty_loop_ns():.1f} ns/iteration; "
          f"onnxruntime {ort.__version__}, provider {session.provider}, intra_op_num_threads = settings.model.threads = "
          f"{defaults.model.threads}, inter_op_num_threads = 1")  # fmt: skip
    print("threads in a pipeline run: the asyncio loop (decode, flow table, batcher, verdict hand-out, events, plugins), "
          "the capture pump (pcap parser), one model executor (tokenizer + onnxruntime + verdicts)")  # fmt: skip
    print(f"model: {session.bundle.model_id} ({session.bundle.model_file.stat().st_size / 1e6:.2f} MB), tokenizer "
          f"{tok.packets} packets, ≤{tok.max_tokens} tokens; tokens per flow: mean {statistics.fmean(lengths):.1f}, "
          f"max {max(lengths)}")  # fmt: skip
    subset = f", every {every}th file ({'--quick' if args.quick else '--every'})" if every > 1 else ""
    print(f"workload: {len(captures)} capture files of {', '.join(args.collections)} in {args.corpus}{subset}: "
          f"{packets:,} packets, {wire_bytes / 1e6:.1f} MB on the wire ({bits / 1e6:.1f} Mbit), {n_flows:,} flow records "
          f"({len(buffered):,} with first packets for the model); at 1 Gb/s it would take {bits / TARGET_BPS:.3f} s")  # fmt: skip
    for line in skipped:
        print(f"  left out: {line}")
    print(f"settings: defaults except model.queue = {queue:,} (≥ the workload's flows), EVE plugin to {EVE_PATH}, "
          f"rules plugin with its defaults; max_wait_ms {defaults.model.max_wait_ms:g}, capture.queue "
          f"{defaults.capture.queue}; best of {repeat} pass(es)")  # fmt: skip
    sys.stdout.flush()

    variants = [
        Variant("per-file", True, 256, 0),
        Variant("per-file", True, 64, 0),
        Variant("per-file", True, 256, 4096),
        Variant("per-file", True, 64, 4096),
        Variant("per-file", False),
        Variant("continuous", True, 256, 0),
        Variant("continuous", False),
    ]
    best: dict[Variant, Pass] = {}
    stage_best: dict[str, float] = {}
    stage_count: dict[str, int] = {}

    def keep(name: str, seconds: float, count: int) -> None:
        if seconds < stage_best.get(name, float("inf")):
            stage_best[name], stage_count[name] = seconds, count

    # Verdicts on the flows, so the EVE stages serialise a full netgpt object as in the pipeline.
    for start in range(0, len(buffered), 256):
        apps, attacks = session.classify(rows[start : start + 256])
        for flow, app_p, attack_p in zip(buffered[start : start + 256], apps, attacks):
            flow.verdict = verdict_of(session, app_p, attack_p)

    for r in range(repeat):
        print(f"pass {r + 1}/{repeat} ...", file=sys.stderr, flush=True)
        keep("read", *timed(lambda: stage_read(captures)))
        keep("decode", *timed(lambda: stage_decode(captures)))
        s, ended = timed(lambda: stage_ingest(captures, flow_config))
        keep("ingest", s, len(ended))
        del ended
        keep("tokenizer", *timed(lambda: len(token_rows(buffered, tok))))
        for size in (256, 64):
            session.classify(rows[:size])  # onnxruntime's first run at a shape allocates
            keep(f"infer{size}", *timed(lambda: stage_inference(session, rows, [size])))
        keep("eve", *timed(lambda: stage_eve(flows)))
        host = new_plugins()
        keep("plugins", *timed(lambda: stage_plugins(host, flows)))
        for variant in variants:
            result = run_pass(variant, captures, queue)
            if variant not in best or result.wall_s < best[variant].wall_s:
                best[variant] = result
            if variant == variants[0]:  # inference alone in the batch sizes this pass actually ran
                sizes = result.batch_sizes or [256]
                keep("infer_pipeline", *timed(lambda: stage_inference(session, rows, sizes)))
                stage_count["infer_pipeline_mean"] = round(statistics.fmean(sizes))
    load_after = load_average()

    # -- end-to-end table ------------------------------------------------------------
    print()
    print(f"End to end, Pipeline in-process, replay speed 0, wall time over all {len(captures)} files "
          f"(model load excluded), best of {repeat}:")  # fmt: skip
    head = (f"{'run':<38}{'wall s':>8}{'CPU s':>7}{'CPU/wall':>9}{'Mb/s':>8}{'flows/s':>9}{'× 1 Gb/s':>9}"
            f"{'batches':>8}{'mean':>6}{'cache hits':>11}{'classified':>11}{'unclassified':>14}")  # fmt: skip
    print(head)
    print("-" * len(head))
    complete = True
    for variant in variants:
        p = best[variant]
        rate = mbps(8 * p.bytes, p.wall_s)
        looked = p.cache_hits + p.cache_misses
        hits = f"{100 * p.cache_hits / looked:.1f}%" if variant.cache and looked else "-"
        unclassified = ", ".join(f"{k} {v}" for k, v in sorted(p.unclassified.items())) or "none"
        if variant.model and p.unclassified:
            complete = False
        mean = f"{statistics.fmean(p.batch_sizes):.0f}" if p.batch_sizes else "-"
        print(f"{variant.label:<38}{p.wall_s:>8.2f}{p.cpu_s:>7.2f}{p.cpu_s / p.wall_s:>9.2f}{rate:>8.1f}"
              f"{p.flows / p.wall_s:>9,.0f}{rate * 1e6 / TARGET_BPS:>9.3f}{len(p.batch_sizes) or '-':>8}{mean:>6}"
              f"{hits:>11}{p.classified if variant.model else '-':>11}{unclassified:>14}")  # fmt: skip
    first = best[variants[0]]
    if any(p.packets != packets or p.bytes != wire_bytes for p in best.values()):
        print("warning: a run saw a different packet or byte count than the workload scan")
    print(f"fully processed (every flow classified, stats unclassified empty in every model run): "
          f"{'yes' if complete else 'NO'}; model alerts {first.model_alerts}; model load (excluded) "
          f"{first.load_s:.2f} s")  # fmt: skip
    if not complete:
        print("  unclassified reasons (Pipeline._ended): no_payload = a flow record with no first-packet buffer "
              "(an active-timeout continuation gets none, and its verdict is copied only if its first part was "
              "already classified); overload = batcher full; shutdown = stopped while waiting; error = inference failed")  # fmt: skip
    print(f"in the default per-file run the executor spent {first.batch_s:.2f} s in {len(first.batch_sizes)} batches "
          f"(tokenizer + inference + verdicts, its own thread)")  # fmt: skip

    # -- stage table -----------------------------------------------------------------
    rows_n = len(rows)
    stages = [
        ("read (pcap parser, PcapFileSource)", "read", n_flows),
        ("read + decode", "decode", n_flows),
        ("read + decode + flow table (Ingest)", "ingest", n_flows),
        (f"tokenizer alone (encode_flow, {rows_n:,} flows)", "tokenizer", rows_n),
        (f"inference alone, pipeline's batches (mean {stage_count.get('infer_pipeline_mean', 0)})", "infer_pipeline", rows_n),
        ("inference alone, full batches of 256", "infer256", rows_n),
        ("inference alone, full batches of 64", "infer64", rows_n),
        (f"EVE serialisation ({n_flows:,} flow events)", "eve", n_flows),
        ("plugins: emit flow events, rules + EVE", "plugins", n_flows),
    ]
    print()
    print(f"Per-stage split on the same files, each stage alone in one thread, best of {repeat} "
          f"(Mb/s and flows/s: the workload's {bits / 1e6:.1f} Mbit and {n_flows:,} flows at that stage's speed):")  # fmt: skip
    head = f"{'stage':<58}{'s':>8}{'Mb/s-eq':>10}{'flows/s-eq':>12}{'× 1 Gb/s':>10}"
    print(head)
    print("-" * len(head))
    for label, key, count in stages:
        s = stage_best[key]
        rate = mbps(bits, s)
        print(f"{label:<58}{s:>8.3f}{rate:>10.1f}{count / s:>12,.0f}{rate * 1e6 / TARGET_BPS:>10.3f}")
    parts = {"ingest": stage_best["ingest"], "tokenizer": stage_best["tokenizer"],
             "inference": stage_best["infer_pipeline"], "plugins": stage_best["plugins"]}  # fmt: skip
    total = sum(parts.values())
    print(f"{'sum: ingest + tokenizer + inference + plugins':<58}{total:>8.3f}{mbps(bits, total):>10.1f}"
          f"{n_flows / total:>12,.0f}{mbps(bits, total) * 1e6 / TARGET_BPS:>10.3f}")  # fmt: skip
    cont = best[Variant("continuous", True, 256, 0)]
    print(f"measured end to end: per-file {first.wall_s:.3f} s, continuous {cont.wall_s:.3f} s. The pipeline overlaps "
          "inference (executor thread, onnxruntime releases the GIL) with reading (capture thread) and decoding "
          "(loop thread), so the stages need not add up to the measured time; the per-file runs also wait up to "
          f"max_wait_ms at each file's end ({len(captures)} files × {defaults.model.max_wait_ms:g} ms = "
          f"{len(captures) * defaults.model.max_wait_ms / 1000:.1f} s at most).")  # fmt: skip
    bound = max(parts, key=lambda k: parts[k])
    print(f"slowest stage: {bound} ({parts[bound]:.3f} s, {100 * parts[bound] / total:.0f}% of the sum)")
    print()
    print(f"peak RSS of this process {peak_rss_mib():.0f} MiB (not a daemon's: the stage measurements' model session "
          "and one end-to-end pass's session are alive at once, each with onnxruntime's CPU memory arena grown to "
          f"the largest batch shapes); load average before {load_before}, after {load_after}")  # fmt: skip


if __name__ == "__main__":
    main()
