"""Edge LLM forecast latency on one CPU core: one window's round (the total and the top applications).

The daemon's trends plugin forecasts, each closed window, the total and the
``top_apps`` applications (default 5): 6 series in one ``predict_many``
batch. Here the histories are the corpus's real series (``series/*.csv``,
the last 64 + one season of points before each origin), 6 at a time, with
torch on ONE thread, the shipped model, horizon 12. Printed: model load
time, resident memory added by torch + transformers + the model, and per
round: median, p90, max over ``--rounds`` rounds (after one warm-up), with
last value on the same rounds for scale. Target: ≤ 100 ms
per round. A benchmark, not a test:

    .venv/bin/python bench/trend_latency.py [--corpus DIR] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from netgptd.trend.forecasters import FORECASTERS
from netgptd.trend.series import load_series
from machine import rss_mib  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
SERIES_PER_ROUND = 6
HORIZON = 12


def timings(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"median {statistics.median(ms):6.1f} ms  p90 {ms[int(0.9 * (len(ms) - 1))]:6.1f} ms  "
            f"max {ms[-1]:6.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    series = [load_series(p).values for p in sorted((args.corpus / "series").glob("*.csv"))]
    rng = np.random.default_rng(0)
    rounds = []
    for _ in range(args.rounds + 1):
        picks = rng.choice(len(series), SERIES_PER_ROUND)
        origins = [int(rng.integers(400, len(series[i]) - HORIZON)) for i in picks]
        rounds.append([series[i][:o] for i, o in zip(picks, origins)])

    before = rss_mib()
    import torch

    torch.set_num_threads(1)
    from netgptd.trend.llm import PromptContext

    started = time.perf_counter()
    llm = FORECASTERS["edge_llm"](288)
    llm.predict_many(rounds[0], HORIZON)  # loads the model; warm-up
    print(f"torch {torch.__version__}, 1 thread; load + first round {time.perf_counter() - started:.2f} s, "
          f"+{rss_mib() - before:.0f} MiB resident (torch, transformers, model)")  # fmt: skip
    context = PromptContext(site="bench", location="lab", when=datetime(2026, 11, 26, 14, tzinfo=timezone.utc))
    results = {}
    spent = []
    for histories in rounds[1:]:
        begun = time.perf_counter()
        llm.predict_many(histories, HORIZON, contexts=[context] * len(histories))
        spent.append(time.perf_counter() - begun)
    results["edge_llm (one batch of 6)"] = spent
    spent = []
    for histories in rounds[1:]:  # Holt-Winters is left out: its refits take seconds per series here
        begun = time.perf_counter()
        for history in histories:
            model = FORECASTERS["last_value"](288)
            model.fit(history)
            model.predict(history, HORIZON)
        spent.append(time.perf_counter() - begun)
    results["last_value (fit + predict, 6 series)"] = spent
    print(f"{args.rounds} rounds of {SERIES_PER_ROUND} series, horizon {HORIZON}:")
    for name, spent in results.items():
        print(f"  {name:<36} {timings(spent)}")
    print(f"resident memory at the end: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
