"""Central inference at 1, 4 and 10 sensors: the service's flows/s, the sensors' request latency, their own pace.

    NETGPTD_TRITON_PYTHON=.venv-triton/bin/python python bench/central_inference.py [--sensors 1,4,10] [--timeout-ms 200]

One Triton service (``netgptd serve-central``, the shipped bundle, a 5 ms
batching window) for the whole run. For each fleet size N, N real
``netgptd run --source pcap:<mining capture> --replay-speed 0`` sensors start
at once, with ``central_below = 1.0`` (every flow goes to the service), in
four cases side by side: the service up, frozen (SIGSTOP: it accepts
connections and answers nothing, so requests time out after
``central_timeout_ms``, 200 by default as in netgptd), away (nothing listening), and no central
inference at all. Per case: the flows classified centrally per second (the
sum over sensors of the flows answered, over the fleet's wall time, startup
included; Triton's own ``nv_inference_count`` alongside) and how many of
the flows sent were answered (a request past the timeout, or failed, leaves
its flows, and those of the next ``central_retry_s`` = 60, to the local
model), the requests'
latency as the sensors see it (their last stats event's ``central``: the
median of their p50s, the worst of their p99s), and each sensor's wall time
and flows/s (classified flows over its wall time: the mean, and the slowest
sensor's), with the ratio of the sensors' pace to the no-central case.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from broker import free_port  # noqa: E402
from conftest import corpus_missing_reason, corpus_path  # noqa: E402
from machine import cpu_model  # noqa: E402
from test_central_inference import TRITON_PYTHON, Triton, central_stats, sensor, serve_central  # noqa: E402
from test_daemon import MINING  # noqa: E402

CASES = ("up", "frozen", "away", "none")


def fleet(folder: Path, capture: Path, n: int, url: str, timeout_ms: int) -> dict[str, float]:
    """N sensors at once against ``url`` ("" = no central inference): their pace and what the service did."""
    started = time.monotonic()
    plugins = '[plugins.rules]\n[plugins.prometheus]\nlisten = "127.0.0.1:{}"\n'  # each its own metrics port
    daemons = [sensor(folder / f"s{i}", capture, url, timeout_ms=timeout_ms, extra=plugins.format(free_port()))
               for i in range(n)]  # fmt: skip
    ended: dict[int, float] = {}
    while len(ended) < n:
        for i, daemon in enumerate(daemons):
            if i not in ended and daemon.process.poll() is not None:
                ended[i] = time.monotonic()
                if daemon.process.returncode != 0:
                    raise SystemExit(f"sensor {folder / f's{i}'} failed:\n{daemon.log.read_text()[-2000:]}")
        time.sleep(0.05)
    walls = [ended[i] - started for i in range(n)]
    classified = [d.events("stats")[-1]["netgpt"]["stats"]["classified"] for d in daemons]
    centrals = [central_stats(d) for d in daemons] if url else []
    latencies = [c["latency_ms"] for c in centrals if c["latency_ms"]["of"]]
    return {"wall": max(walls), "mean_fps": statistics.mean(c / w for c, w in zip(classified, walls)),
            "slowest_fps": min(c / w for c, w in zip(classified, walls)),
            "answered": sum(c["answered"] for c in centrals), "sent": sum(c["sent"] for c in centrals),
            "requests": sum(c["requests"] for c in centrals),
            "p50": statistics.median(x["p50"] for x in latencies) if latencies else float("nan"),
            "p99": max(x["p99"] for x in latencies) if latencies else float("nan")}  # fmt: skip


def measure(work: Path, capture: Path, triton: Triton, n: int, timeout_ms: int) -> dict[str, dict[str, float]]:
    rows = {}
    for case in CASES:
        before = triton.counter("nv_inference_count") if case == "up" else 0.0
        url = {"up": triton.url, "frozen": triton.url, "away": f"http://127.0.0.1:{free_port()}", "none": ""}[case]
        if case == "frozen":
            os.killpg(triton.process.pid, signal.SIGSTOP)
        try:
            rows[case] = fleet(work / f"n{n}-{case}", capture, n, url, timeout_ms)
        finally:
            if case == "frozen":
                os.killpg(triton.process.pid, signal.SIGCONT)
        rows[case]["triton_rows"] = triton.counter("nv_inference_count") - before if case == "up" else 0.0
        print(f"  {n:>2} sensors, service {case}: {rows[case]['wall']:.1f} s", file=sys.stderr, flush=True)
    return rows


def table(results: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = ["| sensors | service | central flows/s (Triton rows) | answered / sent | requests | p50 / p99 ms | wall s | "
             "sensor flows/s mean (slowest) | pace vs no central |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, rows in results.items():
        base = rows["none"]["mean_fps"]
        for case in CASES:
            r = rows[case]
            central = f"{r['answered'] / r['wall']:.0f} ({r['triton_rows']:.0f})" if case == "up" else "0"
            latency = "–" if case == "none" else f"{r['p50']:.0f} / {r['p99']:.0f}"
            sent = "–" if case == "none" else f"{r['answered']:.0f} / {r['sent']:.0f}"
            lines.append(f"| {n} | {case} | {central} | {sent} | {r['requests']:.0f} | {latency} | {r['wall']:.1f} | "
                         f"{r['mean_fps']:.0f} ({r['slowest_fps']:.0f}) | {r['mean_fps'] / base:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", default="1,4,10", help="fleet sizes, comma-separated (default %(default)s)")
    parser.add_argument("--timeout-ms", type=int, default=200,
                        help="the sensors' central_timeout_ms (default %(default)s, netgptd's own default)")  # fmt: skip
    parser.add_argument("--keep", type=Path, metavar="DIR", help="the sensors' logs and EVE files go here, and stay")
    args = parser.parse_args()
    if reason := corpus_missing_reason():
        print(f"central_inference: {reason}", file=sys.stderr)
        return 2
    if not TRITON_PYTHON.exists():
        print(f"central_inference: no {TRITON_PYTHON} (set NETGPTD_TRITON_PYTHON; setup.sh test makes .venv-triton)",
              file=sys.stderr)  # fmt: skip
        return 2
    capture = corpus_path() / MINING
    sizes = [int(n) for n in args.sensors.split(",")]
    with tempfile.TemporaryDirectory(prefix="central-bench-") as tmp:
        work = args.keep or Path(tmp)
        with serve_central(work / "triton.log", queue_delay_us=5000) as triton:
            results = {n: measure(work, capture, triton, n, args.timeout_ms) for n in sizes}
    print(f"central inference, {capture.name} at full speed, every flow sent, central_timeout_ms = {args.timeout_ms}; "
          f"{cpu_model()}, {os.cpu_count()} CPUs")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
