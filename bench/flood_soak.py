"""Soak: does the running sensor's memory stay flat under a spoofed-source flood?

Builds one classic pcap of ``--duration`` seconds: a spoofed-source SYN flood
on one victim and a spoofed-source UDP flood on another (``--flood-rate``
flows per second together, every packet from a new random address), mixed
with normal traffic (the Ethernet captures of the corpus's nDPI collection,
each cut to its first ``--capture-seconds``, one starting every
``--capture-step`` seconds, looped).
Then runs the real daemon on it (``python -m netgptd run``, replayed at
``--replay-speed``, default plugins rules and prometheus plus EVE to a temp
file) and samples its VmRSS and VmHWM (/proc) and its Prometheus counters
every ``--interval`` seconds. It prints RSS over time, flows, flows/s, flows
classified, alerts, the rules' tracked and evicted windows, the flood flows
summarised instead of written (netgptd.flood_log), each alert's
delay after the flood started (capture time) and when the first was seen
in the metrics (wall time, to the sample), and a verdict: ``flat`` when
the mean RSS of the last third of the samples after ``--warmup`` is within
``--tolerance`` of the first third's, ``growing`` otherwise.

    .venv/bin/python bench/flood_soak.py [--duration 600] [--flood-rate 2000] [--no-model]

Not part of the test suite: it runs for the whole duration.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.eve import event_seconds
from netgptd.synth.flood import spoofed_flood
from netgptd.synth.pcap_writer import write_pcap

from machine import cpu_model

CORPUS = Path(os.environ.get("NETGPT_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
NS = 1_000_000_000
START_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z: the flood starts here, with the capture
SYN_VICTIM, UDP_VICTIM = "10.99.0.10", "10.99.0.20"


def normal_traffic(capture_s: float, step_s: float) -> tuple[list[PacketRecord], int]:
    """The nDPI captures' Ethernet records, each cut to its first ``capture_s`` seconds, one starting every
    ``step_s`` seconds from time 0 (they overlap); and the span of the whole."""
    records: list[PacketRecord] = []
    offset = 0
    for path in sorted((CORPUS / "ndpi" / "pcap").iterdir()):
        try:
            capture = [r for r in PcapFileSource(path).packets() if r.linktype == LINKTYPE_ETHERNET]
        except CaptureFileError:
            continue
        if not capture:
            continue
        first = min(r.ts_ns for r in capture)
        kept = sorted((r for r in capture if 0 <= r.ts_ns - first < capture_s * NS), key=lambda r: r.ts_ns)
        records += [r._replace(ts_ns=offset + r.ts_ns - first, interface=0) for r in kept]
        offset += int(step_s * NS)
    records.sort(key=lambda r: r.ts_ns)
    return records, max(offset, records[-1].ts_ns + int(step_s * NS))


def looped(records: list[PacketRecord], span: int, duration_ns: int) -> Iterator[PacketRecord]:
    """``records`` (times from 0) again and again from START_NS, for ``duration_ns``."""
    start = 0
    while start < duration_ns:
        for r in records:
            if start + r.ts_ns >= duration_ns:
                return
            yield r._replace(ts_ns=START_NS + start + r.ts_ns)
        start += span


def flood(rate: int, duration_ns: int, seed: int = 1) -> Iterator[PacketRecord]:
    """One packet per flow, each from a new random address: SYNs to SYN_VICTIM:80 and UDP to UDP_VICTIM:53 in turn."""
    return spoofed_flood(duration_ns * rate // NS, rate, START_NS, SYN_VICTIM, UDP_VICTIM, seed)


def build_capture(path: Path, duration_s: float, rate: int, capture_s: float, step_s: float) -> tuple[int, int]:
    """Write the flood mixed with normal traffic; (flood packets, normal packets)."""
    duration_ns = int(duration_s * NS)
    normal, span = normal_traffic(capture_s, step_s)
    counts = {"flood": 0, "normal": 0}

    def counted(kind: str, records: Iterator[PacketRecord]) -> Iterator[PacketRecord]:
        for r in records:
            counts[kind] += 1
            yield r

    merged = heapq.merge(counted("flood", flood(rate, duration_ns)),
                         counted("normal", looped(normal, span, duration_ns)), key=lambda r: r.ts_ns)  # fmt: skip
    with open(path, "wb") as stream:
        write_pcap(stream, merged, LINKTYPE_ETHERNET)
    return counts["flood"], counts["normal"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_memory_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of a process, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def scrape(port: int) -> dict[str, float]:
    """The daemon's metrics, summed over labels by name (empty while it does not answer)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            totals[base] = totals.get(base, 0.0) + float(value)
    return totals


def write_config(path: Path, capture: Path, eve: Path, port: int, speed: float, model: bool) -> None:
    path.write_text(f"""[capture]
source = "pcap:{capture}"
replay_speed = {speed}
[model]
enabled = {str(model).lower()}
[stats]
interval = 5.0
[plugins.rules]
[plugins.prometheus]
listen = "127.0.0.1:{port}"
[plugins.eve]
path = "{eve}"
""")


def eve_alerts(eve: Path) -> list[dict]:
    """The alert events of the EVE file (only alert lines are parsed)."""
    alerts = []
    with open(eve, encoding="utf-8") as stream:
        for line in stream:
            if '"event_type":"alert"' in line:
                alerts.append(json.loads(line))
    return alerts


def verdict(rss: list[float], tolerance: float) -> str:
    third = max(1, len(rss) // 3)
    first, last = sum(rss[:third]) / third, sum(rss[-third:]) / third
    growth = (last - first) / first
    word = "flat" if growth <= tolerance else "growing"
    return f"{word} (last third {last:.0f} MiB vs first third {first:.0f} MiB, {growth:+.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of flood (capture time)")
    parser.add_argument("--flood-rate", type=int, default=2000, help="spoofed flows per second (SYN and UDP)")
    parser.add_argument("--capture-seconds", type=float, default=20.0, help="seconds kept of each corpus capture")
    parser.add_argument("--capture-step", type=float, default=1.0, help="seconds between corpus captures' starts")
    parser.add_argument("--replay-speed", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds left out of the verdict (while the flow table fills)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="growth of the mean RSS still called flat")
    parser.add_argument("--no-model", action="store_true", help="run without classification")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        capture, eve, config = tmpdir / "flood.pcap", tmpdir / "eve.json", tmpdir / "netgptd.toml"
        started = time.perf_counter()
        flood_packets, normal_packets = build_capture(capture, args.duration, args.flood_rate, args.capture_seconds,
                                                       args.capture_step)
        print(f"capture: {args.duration:.0f} s, {flood_packets:,} spoofed flood packets ({args.flood_rate}/s) + "
              f"{normal_packets:,} corpus packets, {capture.stat().st_size / 1e6:.0f} MB, built in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        port = free_port()
        write_config(config, capture, eve, port, args.replay_speed, not args.no_model)
        command = [sys.executable, "-m", "netgptd", "run", "--config", str(config), "--state-dir", str(tmpdir)]
        daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(tmpdir / "log", "w"))
        columns = {"packets": "netgpt_packets_total", "classified": "netgpt_flows_classified_total",
                   "alerts": "netgpt_alerts_total", "rules windows": "netgpt_rules_windows",
                   "evicted": "netgpt_rules_evicted_total", "summarised": "netgpt_flows_summarised_total"}  # fmt: skip
        print(f"\n{'t s':>6}{'VmRSS MiB':>11}{'VmHWM MiB':>11}{'flows':>10}{'flows/s':>9}"
              + "".join(f"{name:>{len(name) + 3}}" for name in columns))
        samples: list[tuple[float, float]] = []
        begin, previous = time.monotonic(), (0.0, 0.0)
        limit = args.duration / max(args.replay_speed, 1e-9) + 120 if args.replay_speed else float("inf")
        metrics: dict[str, float] = {}
        first_alert_at: float | None = None  # the first sample (wall time) whose metrics show an alert
        while daemon.poll() is None and time.monotonic() - begin < limit:
            time.sleep(args.interval)
            try:
                rss, hwm = proc_memory_mib(daemon.pid)
            except (OSError, KeyError):
                break
            metrics = scrape(port) or metrics
            t = time.monotonic() - begin
            flows = metrics.get("netgpt_flows_ended_total", 0.0)
            rate = (flows - previous[1]) / (t - previous[0])
            previous = (t, flows)
            samples.append((t, rss))
            if first_alert_at is None and metrics.get("netgpt_alerts_total", 0) > 0:
                first_alert_at = t
            print(f"{t:>6.0f}{rss:>11.0f}{hwm:>11.0f}{flows:>10,.0f}{rate:>9,.0f}"
                  + "".join(f"{metrics.get(metric, 0):>{len(name) + 3},.0f}" for name, metric in columns.items()),
                  flush=True)
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
        elapsed = time.monotonic() - begin
        kept = [rss for t, rss in samples if t >= args.warmup]
        alerts = eve_alerts(eve)
        start = START_NS / NS
        print(f"\nran {elapsed:.0f} s (daemon exit {daemon.returncode}); "
              f"{metrics.get('netgpt_flows_ended_total', 0) / elapsed:,.0f} flows/s on average")
        seen = f"; first seen in the metrics {first_alert_at:.0f} s (wall) after the start" if first_alert_at else ""
        print(f"alerts: {len(alerts)}{seen}")
        for alert in alerts[:12]:
            meta = alert["netgpt"]
            print(f"  {meta['detector']:<18} {alert.get('dest_ip', ''):<16} flows {meta.get('flows')}, "
                  f"{event_seconds(alert['timestamp']) - start:+.1f} s after the flood started")
        print(f"verdict after {args.warmup:.0f} s warm-up: {verdict(kept, args.tolerance) if kept else 'no samples'}")


if __name__ == "__main__":
    main()
