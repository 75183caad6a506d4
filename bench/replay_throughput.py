"""Throughput of read + decode + flow tracking, side by side with pyshark and ndpiReader.

One run builds a single classic pcap from the real Ethernet captures of the
corpus (nDPI, mining, DDoS collections; each capture shifted in time to
follow the previous one by an hour, so flows never span captures) and
replays that same file through:

- netgptd's reader + decoder + flow table, in this process, one core, with each engine
  (``python``: the pure-Python reference; ``compiled``: record parsing, decoding and the flow
  table in Rust, ``netgptd.hotpath``, flow records handed to Python); read + decode alone with
  each (the compiled one handing every packet to Python), and the Rust parser + decoder with no
  Python at all;
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

    .venv/bin/python bench/replay_throughput.py [--pyshark-seconds 20 (0: without pyshark)] [--flood-packets 300000]
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
from itertools import islice
from pathlib import Path

from netgptd.capture.file_source import PcapFileSource
from netgptd.capture.pcap_format import CaptureFormatError, CaptureParser
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET, decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.flow.config import FlowConfig, Timeouts
from netgptd.flow.table import FlowTable
from netgptd.hotpath.decode import BatchDecoder
from netgptd.hotpath.native import load_problem
from netgptd.ingest import Ingest
from netgptd.synth.flood import spoofed_flood
from netgptd.replay import RECORD_BATCH, read_file
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


def time_netgptd(path: Path, engine: str, repeats: int = 3) -> tuple[float, int, int]:
    """Best wall time of read + decode + flows over the file with ``engine``, as ``replay`` runs it; packets, flows."""
    best = float("inf")
    packets = flows = 0
    for _ in range(repeats):
        ingest = Ingest(FlowConfig(first_packets=0), engine=engine)
        start = time.perf_counter()
        read_file(ingest, PcapFileSource(path, ingest.engine), _drop)
        ingest.flush()
        best = min(best, time.perf_counter() - start)
        packets, flows = ingest.packets, ingest.flows.flows_created
    return best, packets, flows


def _drop(flows: list) -> None:
    """Where replay hands ended flows to EVE: this bench measures the flows' making, not their output."""


def time_read_decode(path: Path, engine: str, repeats: int = 3) -> float:
    """Best wall time of read + decode alone (the compiled engine's batch decoder: what crossing into Python
    per packet costs, without the flow table)."""
    best = float("inf")
    for _ in range(repeats):
        decode_batch = BatchDecoder().decode if engine == "compiled" else None
        start = time.perf_counter()
        records = PcapFileSource(path, engine).packets()
        while batch := list(islice(records, RECORD_BATCH)):
            if decode_batch is not None:
                decode_batch(batch)
                continue
            for record in batch:
                try:
                    decode(record)
                except (DecodeError, NotIP):
                    pass
        best = min(best, time.perf_counter() - start)
    return best


def time_rust_alone(path: Path) -> float | None:
    """Seconds the Rust parser + decoder take over the file with no Python in the loop (hotpath's example),
    or None without cargo."""
    cargo = shutil.which("cargo")
    if cargo is None:
        return None
    manifest = Path(__file__).resolve().parents[1] / "hotpath" / "Cargo.toml"
    proc = subprocess.run([cargo, "run", "-q", "--release", "--example", "read_decode", "--manifest-path", str(manifest),
                           str(path)], check=True, capture_output=True, text=True)  # fmt: skip
    return float(proc.stdout.split()[2])


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


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bytes_per_flow_compiled(path: Path, first_packets: int) -> tuple[float, int]:
    """The compiled table's growth per tracked flow: resident memory (allocator included), nothing ending;
    in a fresh process each time, as memory freed by an earlier table would be counted again."""
    proc = subprocess.run([sys.executable, __file__, "--memory-compiled", str(path), str(first_packets)], check=True,
                          capture_output=True, text=True)  # fmt: skip
    per_flow, tracked = proc.stdout.split()
    return float(per_flow), int(tracked)


def _bytes_per_flow_compiled(path: Path, first_packets: int) -> tuple[float, int]:
    forever = Timeouts(1e9, 1e9, 1e9, 1e9, 1e9, 1e9, active=0)
    ingest = Ingest(FlowConfig(timeouts={"default": forever}, first_packets=first_packets), engine="compiled")
    before = _resident_bytes()
    read_file(ingest, PcapFileSource(path, ingest.engine), _drop)
    grown = _resident_bytes() - before
    return grown / max(1, len(ingest.flows)), len(ingest.flows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyshark-seconds", type=float, default=20.0)
    parser.add_argument("--flood-packets", type=int, default=300_000, help="packets of the spoofed SYN flood")
    parser.add_argument("--full-path-only", action="store_true",
                        help="only the netgptd replay / ndpiReader comparison (no pyshark, no memory per flow)")
    parser.add_argument("--memory-compiled", nargs=2, metavar=("PCAP", "FIRST_PACKETS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_compiled:  # the child process of bytes_per_flow_compiled
        per_flow, tracked = _bytes_per_flow_compiled(Path(args.memory_compiled[0]), int(args.memory_compiled[1]))
        print(per_flow, tracked)
        return
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

        engines = ["python"] + (["compiled"] if load_problem() is None else [])
        if len(engines) == 1:
            print(f"compiled hot path not available ({load_problem()}): Python engine only")
        timed = {engine: time_netgptd(mix, engine) for engine in engines}
        decode_only = {engine: n / time_read_decode(mix, engine) for engine in engines}
        best = engines[-1]
        ours_s, packets, flows = timed[best]
        ours_pps = packets / ours_s
        ndpi_s = time_ndpi(mix)
        py_s, py_n = time_pyshark(mix, args.pyshark_seconds) if args.pyshark_seconds > 0 else (1.0, 0)

        print(f"\n{'tool':<38}{'packets/s':>12}{'ratio netgptd ' + best + '/tool':>28}")
        for engine in engines:
            pps = timed[engine][1] / timed[engine][0]
            print(f"{'netgptd read+decode+flows, ' + engine:<38}{pps:>12,.0f}{ours_pps / pps:>28.2f}")
        for engine in engines:
            pps = decode_only[engine]
            print(f"{'  read+decode only, ' + engine:<38}{pps:>12,.0f}{decode_only[best] / pps:>28.2f}")
        rust_s = time_rust_alone(mix)
        if rust_s is not None:
            print(f"{'  read+decode, Rust alone (no Python)':<38}{n / rust_s:>12,.0f}{decode_only[best] * rust_s / n:>28.2f}")
        if py_n:
            print(f"{'pyshark FileCapture (' + str(py_n) + ' pkts)':<38}{py_n / py_s:>12,.0f}{ours_pps * py_s / py_n:>28.1f}")
        if ndpi_s is not None:
            ndpi_pps = n / ndpi_s
            print(f"{'ndpiReader -i (wall, with DPI)':<38}{ndpi_pps:>12,.0f}{ours_pps / ndpi_pps:>28.2f}")
        else:
            print("ndpiReader not installed (apt-get install libndpi-bin): no comparison")
        print(f"\nnetgptd ({best}): {packets:,} packets, {flows:,} flows in {ours_s:.2f} s on one core")

        for first_packets in (0, 8):
            per_flow, tracked = bytes_per_flow(mix, first_packets)
            print(f"memory per tracked flow, python, first_packets={first_packets}: {per_flow:,.0f} bytes "
                  f"({tracked:,} flows, tracemalloc)")
            if "compiled" in engines:
                per_flow, tracked = bytes_per_flow_compiled(mix, first_packets)
                print(f"memory per tracked flow, compiled, first_packets={first_packets}: {per_flow:,.0f} bytes "
                      f"({tracked:,} flows, resident memory)")


if __name__ == "__main__":
    main()
