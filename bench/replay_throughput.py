"""Throughput of read + decode + flow tracking, side by side with pyshark and ndpiReader.

One run builds a single classic pcap from the real Ethernet captures of the
corpus (nDPI, mining, DDoS collections; each capture shifted in time to
follow the previous one by an hour, so flows never span captures) and
replays that same file through:

- netgptd's reader + decoder + flow table, in this process, one core;
- ``pyshark.FileCapture`` (default settings), stopped after a time budget
  because it is three orders of magnitude slower;
- ``ndpiReader -i FILE`` (Debian's libndpi-bin), which also does DPI.

It prints packets/s for each and the ratios, and the memory per tracked
flow with first-packet buffers off and on (tracemalloc, table growth only).

Then the whole path, side by side with ``ndpiReader -i FILE``: ``netgptd
replay --no-model --eve FILE`` (decode, flow table, rules, EVE, everything
else at its defaults; a separate process, wall time from start to exit, as
ndpiReader's) on a spoofed-source SYN flood (``--flood-packets`` at 100k/s,
every packet a new flow) and on the same corpus mix; packets/s, the ratio,
each process's peak RSS, and the EVE lines and alerts written.

    .venv/bin/python bench/replay_throughput.py [--pyshark-seconds 20] [--flood-packets 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from netgptd.capture.file_source import PcapFileSource
from netgptd.capture.pcap_format import CaptureFormatError, CaptureParser
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET, decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.flow.config import FlowConfig, Timeouts
from netgptd.flow.table import FlowTable
from netgptd.ingest import Ingest
from netgptd.synth.flood import spoofed_flood
from netgptd.synth.pcap_writer import write_pcap

CORPUS = Path(os.environ.get("NETGPT_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
COLLECTIONS = ("ndpi/pcap", "mining", "ddos")
GAP_NS = 3600 * 1_000_000_000
MAX_SPAN_NS = 7 * 86400 * 1_000_000_000
FLOOD_RATE = 100_000  # packets (new flows) per second of capture time
FLOOD_START_NS = 1_767_225_600 * 1_000_000_000
FLOOD_VICTIM = "10.99.0.10"


def build_mix(out: Path) -> int:
    """Write every Ethernet record of the collections into one pcap; return the count."""
    records: list[PacketRecord] = []
    next_start = 1_600_000_000 * 1_000_000_000
    for collection in COLLECTIONS:
        for path in sorted((CORPUS / collection).iterdir()):
            try:
                capture = [r for r in CaptureParser().feed(path.read_bytes()) if r.linktype == LINKTYPE_ETHERNET]
            except CaptureFormatError:
                continue
            if not capture:
                continue
            first = min(r.ts_ns for r in capture)
            if max(r.ts_ns for r in capture) - first > MAX_SPAN_NS:
                continue  # a fuzzed capture with nonsense timestamps
            last = 0
            for r in capture:
                ts = next_start + (r.ts_ns - first)
                last = max(last, ts)
                records.append(r._replace(ts_ns=ts, interface=0))
            next_start = last + GAP_NS
    with open(out, "wb") as stream:
        write_pcap(stream, records, LINKTYPE_ETHERNET)
    return len(records)


def build_flood(out: Path, packets: int) -> int:
    """Write a spoofed-source SYN flood (one packet per flow) of ``packets`` packets; return the count."""
    with open(out, "wb") as stream:
        write_pcap(stream, spoofed_flood(packets, FLOOD_RATE, FLOOD_START_NS, FLOOD_VICTIM), LINKTYPE_ETHERNET)
    return packets


def timed_process(command: list[str]) -> tuple[float, float]:
    """Run ``command`` to its end; (wall seconds, peak RSS MiB) of that process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} exited {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss / 1024


def eve_counts(path: Path) -> tuple[int, int, int]:
    """Lines, alerts, and flows summarised (the flood summaries' ``flows``) of an EVE file."""
    lines = alerts = summarised = 0
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            lines += 1
            if '"event_type":"alert"' in line:
                alerts += 1
            elif '"event_type":"flood_summary"' in line:
                summarised += json.loads(line)["flood_summary"]["flows"]
    return lines, alerts, summarised


def compare_full_path(captures: list[tuple[str, Path, int]], tmp: Path) -> None:
    """netgptd replay (rules and EVE on) against ndpiReader on each capture, one line each."""
    binary = shutil.which("ndpiReader")
    print(f"\n{'capture':<22}{'tool':<34}{'packets/s':>11}{'peak RSS MiB':>14}{'ratio':>7}  EVE")
    for name, path, packets in captures:
        eve = tmp / "eve.json"
        ours_s, ours_rss = timed_process([sys.executable, "-m", "netgptd", "replay", "--no-model", "-q",
                                          "--eve", str(eve), str(path)])  # fmt: skip
        lines, alerts, summarised = eve_counts(eve)
        ours_pps = packets / ours_s
        if binary is not None:
            ndpi_s, ndpi_rss = timed_process([binary, "-i", str(path), "-q"])
            ndpi_pps = packets / ndpi_s
            print(f"{name:<22}{'ndpiReader -i':<34}{ndpi_pps:>11,.0f}{ndpi_rss:>14,.0f}{'':>7}")
            ratio = f"{ours_pps / ndpi_pps:.2f}"
        else:
            ratio = "-"
        print(f"{name:<22}{'netgptd replay (rules+EVE)':<34}{ours_pps:>11,.0f}{ours_rss:>14,.0f}{ratio:>7}  "
              f"{lines:,} lines, {alerts} alerts, {summarised:,} flows summarised")
    if binary is None:
        print("ndpiReader not installed (apt-get install libndpi-bin): no comparison")


def time_netgptd(path: Path, repeats: int = 3) -> tuple[float, int, int]:
    """Best wall time of read + decode + flows over the file; packets, flows."""
    best = float("inf")
    packets = flows = 0
    for _ in range(repeats):
        ingest = Ingest(FlowConfig(first_packets=0))
        start = time.perf_counter()
        feed = ingest.feed
        for record in PcapFileSource(path).packets():
            feed(record)
            if ingest.flows.ended:
                ingest.pop_ended()
        ingest.flush()
        best = min(best, time.perf_counter() - start)
        packets, flows = ingest.packets, ingest.flows.flows_created
    return best, packets, flows


def time_pyshark(path: Path, budget_s: float) -> tuple[float, int]:
    import pyshark

    capture = pyshark.FileCapture(str(path), keep_packets=False)
    count = 0
    start = time.perf_counter()
    try:
        for _ in capture:
            count += 1
            if time.perf_counter() - start > budget_s:
                break
    finally:
        elapsed = time.perf_counter() - start
        capture.close()
    return elapsed, count


def time_ndpi(path: Path, repeats: int = 3) -> float | None:
    binary = shutil.which("ndpiReader")
    if binary is None:
        return None
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([binary, "-i", str(path), "-q"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def bytes_per_flow(path: Path, first_packets: int) -> tuple[float, int]:
    """Table growth per tracked flow, timeouts long enough that nothing ends."""
    packets = []
    for record in PcapFileSource(path).packets():
        try:
            packets.append(decode(record))
        except (DecodeError, NotIP):
            pass
    forever = Timeouts(1e9, 1e9, 1e9, 1e9, 1e9, 1e9, active=0)
    config = FlowConfig(timeouts={"default": forever}, first_packets=first_packets)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = FlowTable(config)
    for packet in packets:
        table.add(packet)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return grown / max(1, len(table)), len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyshark-seconds", type=float, default=20.0)
    parser.add_argument("--flood-packets", type=int, default=300_000, help="packets of the spoofed SYN flood")
    parser.add_argument("--full-path-only", action="store_true",
                        help="only the netgptd replay / ndpiReader comparison (no pyshark, no memory per flow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mix = Path(tmp) / "mix.pcap"
        n = build_mix(mix)
        size_mb = mix.stat().st_size / 1e6
        print(f"capture mix: {n:,} packets, {size_mb:.1f} MB, from {', '.join(COLLECTIONS)}")
        flood = Path(tmp) / "synflood.pcap"
        flood_n = build_flood(flood, args.flood_packets)
        print(f"SYN flood: {flood_n:,} packets at {FLOOD_RATE:,}/s of capture time, each from a new spoofed source")
        compare_full_path([("spoofed SYN flood", flood, flood_n), ("corpus mix", mix, n)], Path(tmp))
        if args.full_path_only:
            return

        ours_s, packets, flows = time_netgptd(mix)
        ours_pps = packets / ours_s
        ndpi_s = time_ndpi(mix)
        py_s, py_n = time_pyshark(mix, args.pyshark_seconds)
        py_pps = py_n / py_s

        print(f"\n{'tool':<34}{'packets/s':>12}{'ratio netgptd/tool':>20}")
        print(f"{'netgptd read+decode+flows':<34}{ours_pps:>12,.0f}{'1.00':>20}")
        print(f"{'pyshark FileCapture (' + str(py_n) + ' pkts)':<34}{py_pps:>12,.0f}{ours_pps / py_pps:>20.1f}")
        if ndpi_s is not None:
            ndpi_pps = n / ndpi_s
            print(f"{'ndpiReader -i (wall, with DPI)':<34}{ndpi_pps:>12,.0f}{ours_pps / ndpi_pps:>20.2f}")
        else:
            print("ndpiReader not installed (apt-get install libndpi-bin): no comparison")
        print(f"\nnetgptd: {packets:,} packets, {flows:,} flows in {ours_s:.2f} s on one core")

        for first_packets in (0, 8):
            per_flow, tracked = bytes_per_flow(mix, first_packets)
            print(f"memory per tracked flow, first_packets={first_packets}: {per_flow:,.0f} bytes ({tracked:,} flows)")


if __name__ == "__main__":
    main()
