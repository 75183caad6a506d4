"""What every benchmark prints about the machine it ran on (imported by the scripts beside it)."""

from __future__ import annotations

import platform
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def empty_loop_ns(n: int = 5_000_000) -> float:
    """A Python speed reference: ns per iteration of an empty loop, best of three."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def rss_mib() -> float:
    """This process's resident memory now."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
