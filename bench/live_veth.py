"""The real-time figure: the corpus mix replayed over a veth pair at rising rates (needs root, tcpreplay).

Two network namespaces (``live-tx-PID``, ``live-rx-PID``) are joined by a
veth pair (MTU 65535, IPv6 off so that the kernel adds no packets of its
own). For each rate, ``tcpreplay --mbps R`` (or ``--topspeed``) sends the
corpus mix (``replay_throughput.build_mix``, 26 MB; looped so that each
replay lasts ``--seconds``, since one pass at the higher rates is a burst
that buffers absorb) from the first namespace while, in the second, one of
these captures the receiving end:

- ``netgptd run --source live:IFACE --no-model`` (dumpcap, decode, flows, rules, EVE);
- the same with the shipped model (every payload flow offered to it);
- ``ndpiReader -i IFACE`` (Debian's libndpi-bin, live, DPI on every flow).

Per rate and tool it prints: the rate tcpreplay achieved and the packets it
sent (its summary), packets seen (netgptd's closing stats event;
ndpiReader's summary) and lost (the difference), drops (dumpcap's exit
summary: kernel + dumpcap, and the interface's; ndpiReader reports none),
flows classified and unclassified by reason (``overload`` and ``shutdown``:
the model could not keep up; ``no_payload``: nothing to classify), and the
CPU the capturing process and its children (dumpcap) used over the replay,
in cores. Then the highest lossless rate of each (every packet sent was
seen, no drop), and the highest at which also no payload flow was left
unclassified (the model kept up).

The namespaces are deleted on every exit, Ctrl-C and errors included.

    .venv/bin/python bench/live_veth.py [--rates 25,50,100,200,400,800,0 (0: --topspeed)] [--seconds 3]
        [--tools netgptd,netgptd+model,ndpi]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_throughput import build_mix  # noqa: E402  (a sibling bench script, not a package)

from netgptd.eve import stats_of  # noqa: E402

TOOLS = ("netgptd", "netgptd+model", "ndpi")
READY_TIMEOUT_S = 120.0  # the model's load on a busy 2-core VM
SETTLE_S = 1.5  # after tcpreplay ends: the capture's buffers drain before the stop
STOP_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_REASONS = ("overload", "shutdown")  # unclassified because the model did not keep up
SENT = re.compile(r"Successful packets:\s+(\d+)")
ACHIEVED = re.compile(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps")
NDPI_SEEN = re.compile(r"IP packets:\s+\d+\s+of (\d+) packets total")  # ndpiReader's "Traffic statistics"
NDPI_FLOWS = re.compile(r"Unique flows:\s+(\d+)")
NDPI_UNKNOWN = re.compile(r"Confidence: Unknown\s+(\d+)")


class Row(NamedTuple):
    tool: str
    rate: str
    achieved_mbps: float
    sent: int
    seen: int
    kernel_drops: int | None
    interface_drops: int | None
    classified: int | None
    unclassified: dict[str, int]
    cores: float

    def lossless(self) -> bool:
        """Every packet sent was seen, and the capture dropped none."""
        return self.seen >= self.sent and (self.kernel_drops or 0) + (self.interface_drops or 0) == 0

    def kept_up(self) -> bool:
        """Lossless, and no payload flow left unclassified because the model was behind."""
        return self.lossless() and sum(self.unclassified.get(reason, 0) for reason in LOAD_REASONS) == 0


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextmanager
def veth_pair() -> Iterator[tuple[str, str, str]]:
    """Namespaces tx and rx joined by a veth; (tx namespace, rx namespace, tag). Deleted on every exit."""
    tag = str(os.getpid())
    tx, rx = f"live-tx-{tag}", f"live-rx-{tag}"
    try:
        for ns in (tx, rx):
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", tx, "link", "add", f"lvtx{tag}", "mtu", "65535", "type", "veth", "peer", "name",
           f"lvrx{tag}", "netns", rx, "mtu", "65535")  # fmt: skip
        sh("ip", "-n", tx, "link", "set", f"lvtx{tag}", "up")
        sh("ip", "-n", rx, "link", "set", f"lvrx{tag}", "up")
        yield tx, rx, tag
    finally:
        for ns in (tx, rx):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def tree_ticks(pid: int) -> int:
    """utime + stime (clock ticks) of ``pid`` and its live descendants (dumpcap)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def has_child(pid: int, name: str) -> bool:
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == name:
                return True
    return False


def replay(tx: str, iface: str, mix: Path, mbps: int, loops: int) -> tuple[int, float]:
    """Send the whole mix ``loops`` times at ``mbps`` (0: as fast as possible), from memory (``-K``);
    packets sent and the Mb/s achieved."""
    pace = ["--topspeed"] if mbps == 0 else ["--mbps", str(mbps)]
    command = ["ip", "netns", "exec", tx, "tcpreplay", "-K", f"--loop={loops}", *pace, "-i", iface, str(mix)]
    proc = subprocess.run(command, check=True, capture_output=True, text=True)  # fmt: skip
    sent, achieved = SENT.search(proc.stdout), ACHIEVED.search(proc.stdout)
    if sent is None or achieved is None:
        raise SystemExit(f"tcpreplay: no 'Successful packets' or 'Rated' in its summary:\n{proc.stdout}{proc.stderr}")
    return int(sent[1]), float(achieved[1])


def run_netgptd(rx: str, tx: str, tag: str, mix: Path, mbps: int, loops: int, model: bool, tmp: Path) -> Row:
    eve, state = tmp / "eve.json", tmp / "state"
    eve.unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)
    command = ["ip", "netns", "exec", rx, sys.executable, "-m", "netgptd", "run", "--source", f"live:lvrx{tag}",
               "--eve", str(eve), "--state-dir", str(state), "--metrics", "127.0.0.1:9400"]  # fmt: skip
    if not model:
        command.append("--no-model")
    daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (eve.exists() and '"stats"' in eve.read_text() and has_child(daemon.pid, "dumpcap")):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"netgptd did not start: {daemon.stderr.read() if daemon.stderr else ''}")
            time.sleep(0.2)
        time.sleep(1.0)  # dumpcap opened its socket
        ticks, start = tree_ticks(daemon.pid), time.monotonic()
        sent, achieved = replay(tx, f"lvtx{tag}", mix, mbps, loops)
        time.sleep(SETTLE_S)
        cores = (tree_ticks(daemon.pid) - ticks) / CLK_TCK / (time.monotonic() - start)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(STOP_TIMEOUT_S)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    stats = {}
    for line in eve.read_text().splitlines():
        if '"stats"' in line:
            stats = stats_of(json.loads(line)) or stats
    drops = stats.get("capture_drops", {})
    return Row("netgptd+model" if model else "netgptd", rate_name(mbps), achieved, sent, stats.get("packets", 0),
               drops.get("kernel"), drops.get("interface"), stats.get("classified"), stats.get("unclassified", {}),
               cores)  # fmt: skip


def run_ndpi(rx: str, tx: str, tag: str, mix: Path, mbps: int, loops: int) -> Row:
    """ndpiReader live on the receiving end, stopped as netgptd is (SIGINT: it prints its totals)."""
    ndpi = subprocess.Popen(["ip", "netns", "exec", rx, "ndpiReader", "-i", f"lvrx{tag}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        time.sleep(1.5)  # ndpiReader opened the interface
        ticks, start = tree_ticks(ndpi.pid), time.monotonic()
        sent, achieved = replay(tx, f"lvtx{tag}", mix, mbps, loops)
        time.sleep(SETTLE_S)
        cores = (tree_ticks(ndpi.pid) - ticks) / CLK_TCK / (time.monotonic() - start)
        ndpi.send_signal(signal.SIGINT)
        out, _ = ndpi.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if ndpi.poll() is None:
            ndpi.kill()
            ndpi.wait()
    seen, flows, unknown = NDPI_SEEN.search(out), NDPI_FLOWS.search(out), NDPI_UNKNOWN.search(out)
    if seen is None or flows is None:
        raise SystemExit(f"ndpiReader: no packet or flow totals in its output:\n{out[-2000:]}")
    unknown_flows = int(unknown[1]) if unknown else 0
    return Row("ndpi", rate_name(mbps), achieved, sent, int(seen[1]), None, None, int(flows[1]) - unknown_flows,
               {"unknown": unknown_flows}, cores)  # ndpiReader reports no drop counters


def rate_name(mbps: int) -> str:
    return f"{mbps} Mb/s" if mbps else "topspeed"


def print_row(row: Row) -> None:
    unclassified = ", ".join(f"{k} {v:,}" for k, v in sorted(row.unclassified.items())) or "-"
    drops = "/".join("-" if d is None else f"{d:,}" for d in (row.kernel_drops, row.interface_drops))
    classified = "-" if row.classified is None else f"{row.classified:,}"
    print(f"{row.tool:<15}{row.rate:>11}{row.achieved_mbps:>9,.0f}{row.sent:>10,}{row.seen:>10,}"
          f"{row.sent - row.seen:>8,}{drops:>12}{classified:>11}  {unclassified:<38}{row.cores:>6.2f}  "
          f"{'yes' if row.lossless() else 'no':>8}  {'yes' if row.kept_up() else 'no'}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="25,50,100,200,400,800,0", help="Mb/s, comma-separated; 0: --topspeed")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="replay at least this long at each rate (the mix looped; at least once)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"some of {','.join(TOOLS)}")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    tools = args.tools.split(",")
    if unknown := set(tools) - set(TOOLS):
        raise SystemExit(f"--tools: unknown {sorted(unknown)}; choose among {','.join(TOOLS)}")
    for binary in ("tcpreplay", "dumpcap", "ip") + (("ndpiReader",) if "ndpi" in tools else ()):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} not found (setup.sh test installs it)")
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the namespaces' cleanup runs on a kill too
    with tempfile.TemporaryDirectory(prefix="live-veth-") as name:
        tmp = Path(name)
        mix = tmp / "mix.pcap"
        packets = build_mix(mix)
        mix_mbit = mix.stat().st_size * 8 / 1e6
        print(f"mix: {packets:,} packets, {mix_mbit:,.0f} Mbit, looped to last {args.seconds:g} s at each rate "
              f"(topspeed: as many loops as the highest rate); {os.cpu_count()} CPUs")
        loops = {mbps: max(1, round(args.seconds * mbps / mix_mbit)) for mbps in rates if mbps}
        loops[0] = max(loops.values(), default=1)
        print(f"{'tool':<15}{'rate':>11}{'Mb/s':>9}{'sent':>10}{'seen':>10}{'lost':>8}{'drops k/if':>12}"
              f"{'classified':>11}  "
              f"{'unclassified':<38}{'cores':>6}  lossless  kept up")  # fmt: skip
        best: dict[tuple[str, str], str] = {}
        with veth_pair() as (tx, rx, tag):
            for tool in tools:
                for mbps in rates:
                    if tool == "ndpi":
                        row = run_ndpi(rx, tx, tag, mix, mbps, loops[mbps])
                    else:
                        row = run_netgptd(rx, tx, tag, mix, mbps, loops[mbps], tool == "netgptd+model", tmp)
                    print_row(row)
                    for test in ("lossless", "kept up"):
                        if (row.lossless() if test == "lossless" else row.kept_up()):
                            best[tool, test] = f"{row.rate} (achieved {row.achieved_mbps:,.0f} Mb/s)"
        print("\nhighest rate   lossless                          lossless, and every payload flow classified")
        for tool in tools:
            print(f"  {tool:<15}{best.get((tool, 'lossless'), 'none'):<34}{best.get((tool, 'kept up'), 'none')}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the namespaces are already gone (veth_pair's finally)
        raise SystemExit("interrupted") from None
