"""Model throughput per CPU core, tokenizer + onnxruntime, with the accuracy each setting costs.

The workload is the held-out test part of the corpus split (``load_corpus``
+ ``split`` with the bundle's tokenizer settings; never a training flow):
its captures are replayed through ``Ingest`` with the bundle's first-packet
buffers, and the ``Flow`` objects of the test flows, in capture order and
by start time within a capture, are what ``Classifier.verdicts`` gets, as
in the daemon.

Everything runs on ONE core: the process (every thread) is pinned to one
CPU, onnxruntime gets ``intra_op_num_threads=1`` and the CPU provider.
Side by side in one run:

- tokenizer alone (``encode_flow``), flows/s;
- inference alone (``ModelSession.classify`` on pre-tokenised rows), flows/s;
- end to end (``Classifier.verdicts``: tokenizer + padding + inference +
  verdicts), flows/s, for batch sizes 1, 16, 64, 256, the bundle's float
  model vs an int8 copy (``quantize_int8`` into a temporary bundle with a
  fresh manifest sha256), verdict cache off vs on (keyed on the flow's
  server address, port and protocol). The cache starts cold for every pass
  over the workload, so its hit rate is that of one pass over the test
  flows, not of a warm daemon;
- app and attack macro-F1 (``metrics.score``) of each row's verdicts on
  the same test flows: what a setting costs in accuracy;
- with ``--max-tokens N``: the same for the int8 model with the serving
  tokenizer cut to N tokens (sequence length; the model was trained on the
  full length, so these rows show what the cut alone costs);
- how many verdicts change with the batch size (int8 quantises activations
  per batch, so a flow's verdict can depend on its batch-mates).

Each measurement repeats passes over the workload for ``--seconds`` and
reports the fastest pass (at least one full pass; on a shared machine other
work only slows a pass down). Also printed: the machine (CPU model, a Python
empty-loop ns/iteration as a speed reference) and the resident memory of a
fresh process with the session loaded. A benchmark, not a test.

    .venv/bin/python bench/model_throughput.py [--model DIR] [--corpus DIR] [--seconds 5] [--max-tokens 64 48]
"""

from __future__ import annotations

import os

# One thread per library, before numpy and onnxruntime start any pool.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import dataclasses
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
import structlog
from netgptd.flow.table import Flow
from netgptd.model.bundle import (
    DEFAULT_BUNDLE,
    MANIFEST_FILE,
    Bundle,
    load_bundle,
    sha256_file,
)
from netgptd.model.session import CPU, Classifier, ModelSession
from netgptd.model.tokenizer import TokenizerConfig, encode_flow
from netgptd.train.dataset import FlowExample, flows_of, load_corpus, split
from netgptd.train.labels import UNKNOWN
from netgptd.train.leakage import capture_paths
from netgptd.train.metrics import score
from machine import cpu_model, empty_loop_ns  # bench/ is the script's folder

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
BATCHES = (1, 16, 64, 256)
CACHE_SIZE = 4096
TARGET = 2000  # flows/s per core

# Run in a fresh interpreter: RSS with netgptd's serving imports, then with the session loaded.
RSS_CHILD = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from netgptd.model.bundle import load_bundle
from netgptd.model.session import CPU, Classifier, ModelSession
before = rss()
session = ModelSession(load_bundle(sys.argv[1]), prefer=(CPU,), threads=1)
session.classify([[257, 262, 0, 80, 259] + [1] * 100] * 64)
print(before, rss())
"""

# Run in a fresh interpreter, so that this process never imports torch.
QUANTIZE_CHILD = """
import sys
from netgptd.train.export import quantize_int8
quantize_int8(sys.argv[1], sys.argv[2])
"""


# -- machine -----------------------------------------------------------------------


def pin_to_one_cpu(cpu: int | None) -> int | None:
    """Pin every thread of this process to one CPU; returns it (None if not possible)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    chosen = allowed[-1] if cpu is None else cpu
    try:
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), {chosen})
    except OSError:
        try:
            os.sched_setaffinity(0, {chosen})
        except OSError:
            return None
    return chosen


def rss_with_session(bundle_dir: Path) -> tuple[int, int] | None:
    done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(bundle_dir)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    before, after = done.stdout.split()[-2:]
    return int(before), int(after)


# -- workload ----------------------------------------------------------------------


@dataclasses.dataclass
class Workload:
    flows: list[Flow]  # what Classifier.verdicts gets
    examples: list[FlowExample]  # the same flows' labels, in the same order
    roots: list[Path]
    test_captures: int
    unmatched: int


def corpus_roots(bundle: Bundle, corpus: Path | None) -> list[Path]:
    """--corpus if given; else the folders the bundle was trained on, if they are here; else the default corpus."""
    if corpus is not None:
        return [corpus]
    trained = [Path(p) for p in bundle.manifest.get("training", {}).get("corpus", [])]
    if trained and all(p.exists() for p in trained):
        return trained
    return [DEFAULT_CORPUS]


def load_workload(bundle: Bundle, roots: list[Path], max_per_capture: int, seed: int) -> Workload:
    """The test flows of the split, as real ``Flow`` objects with first-packet buffers."""
    tok = bundle.tokenizer
    corpus = load_corpus(roots, tok, max_per_capture=max_per_capture, seed=seed, progress=False)
    _, test = split(corpus)
    wanted: dict[tuple[str, str], list[FlowExample]] = {}
    for e in test:
        wanted.setdefault((e.collection, e.capture), []).append(e)
    flows: list[Flow] = []
    examples: list[FlowExample] = []
    unmatched = 0
    for key, path in capture_paths(roots).items():
        chosen = wanted.get(key)
        if not chosen:
            continue
        by_key: dict[tuple[Any, ...], list[Flow]] = {}
        for flow in flows_of(path, tok):
            if flow.first_packets:
                key = (tuple((d, b) for _, d, b in flow.first_packets), flow.server_port, flow.proto)
                by_key.setdefault(key, []).append(flow)
        matched = []
        for e in chosen:
            candidates = by_key.get((e.packets, e.server_port, e.proto))
            if candidates:
                matched.append((candidates.pop(0), e))
            else:
                unmatched += 1
        matched.sort(key=lambda m: m[0].start_ns)  # the order a live capture would see them in
        flows += [f for f, _ in matched]
        examples += [e for _, e in matched]
    return Workload(flows, examples, roots, len(wanted), unmatched)


# -- int8 --------------------------------------------------------------------------


def int8_bundle(bundle: Bundle, directory: Path) -> Bundle:
    """A copy of the bundle with its model quantised to int8 and the manifest's sha256 rewritten."""
    shutil.copytree(bundle.path, directory, dirs_exist_ok=True)
    model = directory / bundle.model_file.name
    quantized = directory / "model.int8.onnx"
    subprocess.run([sys.executable, "-c", QUANTIZE_CHILD, str(bundle.model_file), str(quantized)], check=True)
    quantized.replace(model)
    manifest = dict(bundle.manifest)
    manifest.update(sha256=sha256_file(model), size_bytes=model.stat().st_size, quantized=True)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return load_bundle(directory)


# -- measurements ------------------------------------------------------------------


def repeat(one_pass: Callable[[], Any], count: int, seconds: float) -> tuple[float, Any]:
    """Flows/s of the fastest pass among those that fit ``seconds`` (at least one,
    as in timeit: the other work on a shared machine only ever slows a pass
    down); and the first pass's result."""
    first = None
    best = 0.0
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        result = one_pass()
        now = time.perf_counter()
        best = max(best, count / (now - began))
        if first is None:
            first = result
        if now - start >= seconds:
            return best, first


def packets_of(flow: Flow) -> list[tuple[bool, bytes]]:
    return [(toserver, data) for _, toserver, data in flow.first_packets or ()]


def tokenizer_rate(flows: Sequence[Flow], tok: TokenizerConfig, seconds: float) -> tuple[float, list[list[int]]]:
    inputs = [(packets_of(f), f.server_port) for f in flows]
    return repeat(lambda: [encode_flow(p, port, tok) for p, port in inputs], len(flows), seconds)


def inference_rate(session: ModelSession, rows: Sequence[Sequence[int]], batch: int, seconds: float) -> float:
    def one_pass() -> None:
        for start in range(0, len(rows), batch):
            session.classify(rows[start : start + batch])

    session.classify(rows[:batch])  # warm-up: onnxruntime's first run at a shape allocates
    return repeat(one_pass, len(rows), seconds)[0]


@dataclasses.dataclass
class Row:
    variant: str
    batch: int
    cache: bool
    flows_s: float
    inference_s: float | None
    app_f1: float
    attack_f1: float
    hit_rate: float | None


def end_to_end(session: ModelSession, workload: Workload, batch: int, cache: bool,
               seconds: float) -> tuple[float, list[dict[str, object]], float | None]:  # fmt: skip
    """Flows/s of ``Classifier.verdicts`` fed ``batch`` flows at a time, as the
    daemon's classification stage does; a fresh (cold) cache every pass."""
    flows = workload.flows
    classifiers: list[Classifier] = []

    def one_pass() -> list[dict[str, object]]:
        classifier = Classifier(session, batch=batch, cache_size=CACHE_SIZE if cache else 0)
        classifiers.append(classifier)
        out: list[dict[str, object]] = []
        for start in range(0, len(flows), batch):
            out += classifier.verdicts(flows[start : start + batch])
        return out

    rate, verdicts = repeat(one_pass, len(flows), seconds)
    first = classifiers[0]
    looked_up = first.cache_hits + first.cache_misses
    return rate, verdicts, (first.cache_hits / looked_up if looked_up else 0.0) if cache else None


def macro_f1(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> float:
    extra = sorted(set(truth) - set(classes))  # true classes the model lacks: they count against it
    return score(truth, predicted, list(classes) + extra).macro_f1


# -- output ------------------------------------------------------------------------


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: Sequence[Row]) -> None:
    head = (f"{'variant':<14}{'batch':>6}{'cache':>7}{'flows/s/core':>14}{'infer-only/s':>14}"
            f"{'app F1':>8}{'attack F1':>11}{'cache hits':>12}{'≥ target':>10}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.variant:<14}{r.batch:>6}{'on' if r.cache else 'off':>7}{r.flows_s:>14,.0f}"
              f"{_number(r.inference_s, ',.0f'):>14}{r.app_f1:>8.3f}{r.attack_f1:>11.3f}"
              f"{_number(None if r.hit_rate is None else 100 * r.hit_rate, '.1f') + ('%' if r.hit_rate is not None else ''):>12}"
              f"{'yes' if r.flows_s >= TARGET else 'no':>10}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, metavar="DIR", help="model bundle (default: the shipped one)")
    parser.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                        help=f"corpus folder (default: the folders the bundle was trained on, else {DEFAULT_CORPUS})")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (at least one pass)")
    parser.add_argument("--max-per-capture", type=int, default=400, help="as given to netgptd train")
    parser.add_argument("--max-flows", type=int, default=0, help="cap on the test flows used (0: all)")
    parser.add_argument("--max-tokens", type=int, nargs="*", default=[], metavar="N",
                        help="extra rows: the int8 model with the tokenizer cut to N tokens (sequence length)")  # fmt: skip
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up

    pinned = pin_to_one_cpu(args.cpu)
    bundle = load_bundle(args.model)
    tok = bundle.tokenizer
    shape = bundle.manifest.get("shape", {})
    settings = bundle.manifest.get("training", {}).get("settings", {})
    roots = corpus_roots(bundle, args.corpus)
    started = time.perf_counter()
    workload = load_workload(bundle, roots, args.max_per_capture, int(settings.get("seed", 0)))
    if args.max_flows:
        workload.flows, workload.examples = workload.flows[: args.max_flows], workload.examples[: args.max_flows]
    if not workload.flows:
        sys.exit(f"no test flows in {', '.join(map(str, roots))}")
    load_s = time.perf_counter() - started

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, pinned to CPU {pinned if pinned is not None else '(not possible)'}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"python {platform.python_version()} empty loop: {empty_loop_ns():.1f} ns/iteration; onnxruntime {ort.__version__}, "
          f"CPU provider, intra_op_num_threads=1, inter_op_num_threads=1")  # fmt: skip
    print(f"model: {bundle.model_id} at {bundle.path}, shape {shape or '?'}, "
          f"{bundle.manifest.get('training', {}).get('parameters', '?')} parameters, "
          f"{bundle.model_file.stat().st_size / 1e6:.2f} MB ({'int8' if bundle.manifest.get('quantized') else 'float'})")  # fmt: skip
    print(f"tokenizer: {tok.to_dict()}")
    print(f"workload: {len(workload.flows)} test flows of {workload.test_captures} held-out captures "
          f"({workload.unmatched} not re-found on replay), corpus {', '.join(map(str, roots))}; loaded in {load_s:.0f} s")  # fmt: skip

    truth_apps = [e.label.app if e.label.app in bundle.apps else UNKNOWN for e in workload.examples]
    truth_attacks = [e.label.attack for e in workload.examples]
    missing = sorted(set(truth_attacks) - set(bundle.attacks))
    if missing:
        print(f"note: test flows with attack classes the model lacks: {', '.join(missing)} (scored as misses)")

    tok_rate, rows_tokens = tokenizer_rate(workload.flows, tok, args.seconds)
    lengths = [len(r) for r in rows_tokens]
    print(f"tokens per flow: mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")

    with tempfile.TemporaryDirectory(prefix="netgptd-bench-") as tmp:
        variants: list[tuple[str, Bundle]] = []
        if bundle.manifest.get("quantized"):
            variants.append(("int8 (shipped)", bundle))
        else:
            variants.append(("float", bundle))
            started = time.perf_counter()
            variants.append(("int8", int8_bundle(bundle, Path(tmp) / "int8")))
            print(f"int8 copy: {variants[-1][1].model_file.stat().st_size / 1e6:.2f} MB, quantised in "
                  f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        for n in args.max_tokens:
            short = dataclasses.replace(variants[-1][1], tokenizer=dataclasses.replace(tok, max_tokens=n))
            variants.append((f"{variants[-1][0].split()[0]} ≤{n} tok", short))

        rss = {name: rss_with_session(b.path) for name, b in variants if "tok" not in name}
        print()
        results: list[Row] = []
        changed: dict[str, dict[int, list[dict[str, object]]]] = {name: {} for name, _ in variants}
        for name, vb in variants:
            session = ModelSession(vb, prefer=(CPU,), threads=1)
            pin_to_one_cpu(pinned)  # threads the session may have started
            rows = rows_tokens if vb.tokenizer == tok else [r[: vb.tokenizer.max_tokens] for r in rows_tokens]
            for batch in BATCHES:
                infer = inference_rate(session, rows, batch, args.seconds)
                for cache in (False, True):
                    rate, verdicts, hits = end_to_end(session, workload, batch, cache, args.seconds)
                    row = Row(name, batch, cache, rate, None if cache else infer,
                              macro_f1(truth_apps, [str(v["app"]) for v in verdicts], bundle.apps),
                              macro_f1(truth_attacks, [str(v["attack"]) for v in verdicts], bundle.attacks), hits)  # fmt: skip
                    results.append(row)
                    if not cache:
                        changed[name][batch] = verdicts
                    print(f"  measured {name} batch {batch} cache {'on' if cache else 'off'}: {rate:,.0f} flows/s", flush=True)

    print()
    print(f"Speed/accuracy on {len(workload.flows)} held-out test flows, one core, onnxruntime 1 thread, "
          f"fastest pass in {args.seconds:g} s "
          f"(batch = flows per Classifier.verdicts call and per inference; cache = {CACHE_SIZE}-entry "
          f"verdict cache by server address/port/protocol, cold at each pass):")  # fmt: skip
    print_table(results)
    print()
    print(f"tokenizer alone: {tok_rate:,.0f} flows/s ({1e6 / tok_rate:.0f} µs/flow)")
    for name, _ in variants:
        for r in results:
            if r.variant == name and r.inference_s and not r.cache and r.batch == 64:
                e2e_us, inf_us = 1e6 / r.flows_s, 1e6 / r.inference_s
                print(f"split at batch 64, {name}: end to end {e2e_us:.0f} µs/flow = inference {inf_us:.0f} "
                      f"+ tokenizer {1e6 / tok_rate:.0f} + the rest {e2e_us - inf_us - 1e6 / tok_rate:.0f} "
                      "(verdicts, padding, timing noise)")  # fmt: skip
    for name, by_batch in changed.items():
        base = by_batch[BATCHES[0]]
        moved = {b: sum(v["app"] != w["app"] or v["attack"] != w["attack"] for v, w in zip(base, vs))
                 for b, vs in by_batch.items() if b != BATCHES[0]}  # fmt: skip
        worst = max(moved.values(), default=0)
        print(f"verdicts vs batch {BATCHES[0]}, {name}: " + ", ".join(f"batch {b}: {n} changed" for b, n in moved.items())
              + (" (the batch changes verdicts: int8's activations are quantised per batch, padding included)"
                 if worst else ""))  # fmt: skip
    best = max(results, key=lambda r: r.flows_s)
    best_nocache = max((r for r in results if not r.cache), key=lambda r: r.flows_s)
    for label, r in (("best", best), ("best without cache", best_nocache)):
        verdict = "meets" if r.flows_s >= TARGET else "misses"
        print(f"{label}: {r.flows_s:,.0f} flows/s per core ({r.variant}, batch {r.batch}, cache "
              f"{'on, ' + format(100 * (r.hit_rate or 0), '.1f') + '% hits' if r.cache else 'off'}, 1 thread): "
              f"{r.flows_s / TARGET:.2f}× the {TARGET:,} target, {verdict} it; app F1 {r.app_f1:.3f}, attack F1 {r.attack_f1:.3f}")  # fmt: skip
    for name, value in rss.items():
        if value:
            print(f"memory: {name} session loaded, fresh process RSS {value[1] / 2**20:.0f} MiB "
                  f"({value[0] / 2**20:.0f} MiB with the imports alone, +{(value[1] - value[0]) / 2**20:.0f} MiB)")  # fmt: skip
        else:
            print(f"memory: {name}: the measuring process failed")


if __name__ == "__main__":
    main()
