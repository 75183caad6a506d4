"""NetGPT on a GPU: CUDA provider check, parity with the CPU, flows/s by batch size.

Two steps, because the GPU machine has neither the corpus nor network:

    # here: real flows from the corpus (first packets, as the daemon buffers them)
    .venv/bin/python bench/gpu_throughput.py prepare --out .gpu/flows.pkl [--corpus DIR] [--flows 8192]
    # there, with onnxruntime-gpu installed:
    python3 bench/gpu_throughput.py run --flows .gpu/flows.pkl [--model DIR] [--json OUT]

``run`` asks for CUDAExecutionProvider only and fails if the session is not
on it (no silent CPU fallback); scores the same flows on a CPU session
(all cores) and reports the largest |Δ probability| and the argmax
agreement; then, for batch sizes 1..1024, flows/s of
- inference alone (``ModelSession.classify`` on pre-tokenised rows: padding,
  host→device copy, run, device→host copy, softmax), and
- end to end (``Classifier.verdicts``: tokenizer + the above + verdicts),
each the fastest of repeated passes over the flows for ``--seconds``.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle  # noqa: E402
from netgptd.model.session import CPU, CUDA, Classifier, ModelSession  # noqa: E402

BATCHES = (1, 8, 64, 256, 1024)


def prepare(args: argparse.Namespace) -> None:
    from netgptd.replay import replay

    bundle = load_bundle(args.model)
    captures = sorted((args.corpus / "ndpi" / "pcap").glob("*.pcap*")) + sorted((args.corpus / "mining").glob("*.pcapng"))
    flows: list[dict[str, Any]] = []
    collected: list[Any] = []

    class Keep:
        def verdicts(self, batch: list[Any]) -> list[dict[str, Any]]:
            collected.extend(batch)
            return [{} for _ in batch]

    for capture in captures:
        replay([capture], lambda event: None, flow_config=bundle.tokenizer.flow_config(), classifier=Keep())
        if len(collected) >= args.flows:
            break
    for flow in collected[: args.flows]:
        flows.append({"server_ip": flow.server_ip, "server_port": flow.server_port, "proto": flow.proto,
                      "first_packets": list(flow.first_packets)})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(pickle.dumps(flows))
    print(f"{len(flows)} flows from {len(captures)} captures (at most) → {args.out}")


def fastest(fn: Callable[[], int], seconds: float) -> float:
    """Best flows/s over repeated calls (each call processes all flows once)."""
    best, spent = 0.0, 0.0
    fn()  # warm-up (CUDA kernels, allocator)
    while spent < seconds:
        start = time.perf_counter()
        count = fn()
        took = time.perf_counter() - start
        spent += took
        best = max(best, count / took)
    return best


def run(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    report: dict[str, Any] = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
                              "python": platform.python_version()}  # fmt: skip
    bundle = load_bundle(args.model)
    flows = [SimpleNamespace(**f) for f in pickle.loads(args.flows.read_bytes())]
    gpu = ModelSession(bundle, prefer=(CUDA,))
    report["gpu_session_providers"] = gpu.session.get_providers()
    if gpu.provider != CUDA:
        raise SystemExit(f"not on CUDA: {gpu.session.get_providers()}")
    cpu = ModelSession(bundle, prefer=(CPU,), threads=0)
    rows = [Classifier(gpu)._tokens(f) for f in flows]
    report["flows"], report["mean_tokens"] = len(rows), float(np.mean([len(r) for r in rows]))
    gpu_app, gpu_att, cpu_app, cpu_att = [], [], [], []
    for start in range(0, len(rows), 256):
        a, b = gpu.classify(rows[start : start + 256])
        c, d = cpu.classify(rows[start : start + 256])
        gpu_app.append(a), gpu_att.append(b), cpu_app.append(c), cpu_att.append(d)
    ga, gb, ca, cb = (np.concatenate(x) for x in (gpu_app, gpu_att, cpu_app, cpu_att))
    report["parity"] = {
        "max_abs_diff_app_prob": float(np.abs(ga - ca).max()),
        "max_abs_diff_attack_prob": float(np.abs(gb - cb).max()),
        "app_argmax_agreement": float((ga.argmax(1) == ca.argmax(1)).mean()),
        "attack_argmax_agreement": float((gb.argmax(1) == cb.argmax(1)).mean()),
    }
    print(json.dumps(report, indent=1), flush=True)
    throughput: dict[str, dict[str, float]] = {"inference": {}, "end_to_end": {}}
    for batch in BATCHES:
        chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]

        def infer() -> int:
            for chunk in chunks:
                gpu.classify(chunk)
            return len(rows)

        classifier = Classifier(gpu, batch=batch)

        def end_to_end() -> int:
            for i in range(0, len(flows), batch):
                classifier.verdicts(flows[i : i + batch])
            return len(flows)

        throughput["inference"][str(batch)] = round(fastest(infer, args.seconds))
        throughput["end_to_end"][str(batch)] = round(fastest(end_to_end, args.seconds))
        print(f"batch {batch:>5}: inference {throughput['inference'][str(batch)]:>10,} flows/s, "
              f"end to end {throughput['end_to_end'][str(batch)]:>8,} flows/s", flush=True)  # fmt: skip
    report["flows_per_second"] = throughput
    cpu_chunks = [rows[i : i + 1024] for i in range(0, len(rows), 1024)]
    report["cpu_all_cores_inference_1024"] = round(fastest(lambda: sum(len(c) for c in cpu_chunks if cpu.classify(c)), args.seconds))
    print(f"same machine, CPU provider (all cores), batch 1024: {report['cpu_all_cores_inference_1024']:,} flows/s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--flows", type=int, default=8192)
    p.set_defaults(func=prepare)
    p = sub.add_parser("run")
    p.add_argument("--flows", type=Path, required=True)
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json")
    p.set_defaults(func=run)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
