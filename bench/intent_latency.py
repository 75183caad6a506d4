"""Edge LLM intent latency on one CPU core: operator sentences and observed windows, with memory.

Side by side in one run, with torch on ONE thread (``torch.set_num_threads(1)``)
and the shipped intent model:

- model load (cold, from the package folder) and the resident memory it adds;
- ``intent_from_text`` over the shipped evaluation sentences (held-out phrasing
  templates), per sentence: mean, p50, p95, max — the target is ≤ 300 ms;
- ``intents_from_window`` on windows cut from a real corpus capture (its flow
  and the rule detectors' alerts at sensitive thresholds, 60 s windows), per window: mean, p50, p95, max.

A benchmark, not a test:

    .venv/bin/python bench/intent_latency.py [--corpus DIR] [--capture ddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from netgptd.intent.engine import EdgeLLM, intent_from_text, intents_from_window
from netgptd.intent.profile import SiteProfile
from netgptd.replay import replay
from netgptd.rules import FlowRateRules, RuleSettings
from netgptd.trend.windows import WindowAggregator, event_time
from machine import rss_mib  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "daemon" / "netgptd" / "intent" / "eval_sentences.jsonl"


def summary(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return (f"n={len(ms)}  mean {statistics.fmean(ms):6.1f} ms  p50 {statistics.median(ms):6.1f} ms  "
            f"p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--capture", default="ddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = rss_mib()
    started = time.perf_counter()
    llm = EdgeLLM.load(threads=1)
    print(f"torch {torch.__version__}, 1 thread; model load {time.perf_counter() - started:.2f} s, "
          f"+{rss_mib() - before:.0f} MiB resident ({rss_mib():.0f} MiB in all)")  # fmt: skip

    lines = [json.loads(x) for x in EVAL.read_text().splitlines() if x.strip()]
    times = []
    for example in lines:
        profile = SiteProfile.from_dict(example["profile"])
        start = time.perf_counter()
        intent_from_text(example["text"], profile, None, llm)
        times.append(time.perf_counter() - start)
    print(f"operator sentences ({EVAL.name}): {summary(times)}")

    events: list[dict] = []
    rules = FlowRateRules(RuleSettings(syn_flood_flows=5, cooldown_s=10))  # sensitive: alerts in most windows
    replay([args.corpus / args.capture], lambda e: (events.append(e), events.extend(rules.observe(e))))
    aggregator = WindowAggregator("bench", "sensor", 60.0)
    windows = [w for event in events for w in aggregator.feed(event)] + aggregator.flush()
    alerts = [e for e in events if e["event_type"] == "alert"]
    times = []
    for window in windows:
        start = time.perf_counter()
        mine = [a for a in alerts if window.start <= (event_time(a) or 0.0) < window.end]
        intents_from_window(window, mine, SiteProfile(), llm)
        times.append(time.perf_counter() - start)
    print(f"observed windows ({args.capture}, {len(windows)} windows of 60 s, {len(alerts)} alerts): {summary(times)}")
    print(f"resident memory at the end: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
