"""How many loopback UDP datagrams each live capture path receives (needs root).

A sender process offers numbered datagrams to 127.0.0.1 at a fixed rate
(at most 150k packets/s, at most 10 s of traffic in all) while this process
reads them through:

- ``DumpcapSource`` (dumpcap child, pcapng over a pipe, our parser);
- a plain ``AF_PACKET``/``SOCK_RAW`` socket bound to ``lo``, one ``recvfrom``
  per frame; loopback shows each frame twice, outgoing and incoming, and the
  outgoing copy is skipped by the packet type in the address; then again
  with PACKET_IGNORE_OUTGOING, so that the kernel does not queue that copy;
- ``PysharkSource``, at a much lower rate.

Received % counts distinct sequence numbers. Reported drops are what the path
itself says it lost (dumpcap's exit summary, PACKET_STATISTICS); on loopback
both also count the skipped outgoing copies, so they can exceed the loss.

    .venv/bin/python bench/live_capture.py [--rates 50000,150000] [--seconds 1.2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from netgptd.capture.dumpcap_source import DumpcapSource
from netgptd.capture.pyshark_source import PysharkSource
from netgptd.capture.records import CaptureSource, PacketRecord

MAX_RATE = 150_000
MAX_TRAFFIC_S = 10.0
MAGIC = b"NGDBENCH"
BATCH = 64  # datagrams between rate checks
IDLE_S = 1.0  # a reader is done once nothing arrived for this long after the sender
ETH_P_ALL = 0x0003
SOL_PACKET = 263
SO_RCVBUFFORCE = 33
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
ETH_IP_UDP = 14 + 20 + 8


class Result(NamedTuple):
    source: str
    offered_pps: float
    sent: int
    received: int
    drops: int | None


def send(port: int, rate: int, seconds: float, go: Any, done: Any) -> None:
    """Offer ``rate * seconds`` numbered datagrams; report (sent, elapsed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = int(rate * seconds)
    go.wait()
    start = time.perf_counter()
    for i in range(total):
        sock.sendto(MAGIC + i.to_bytes(8, "big"), ("127.0.0.1", port))
        if i % BATCH == BATCH - 1:
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    done.put((total, time.perf_counter() - start))


class Sender:
    """The sender process, started before the reader so it is ready to go."""

    def __init__(self, port: int, rate: int, seconds: float) -> None:
        ctx = mp.get_context("spawn")
        self.go, self.done = ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=send, args=(port, rate, seconds, self.go, self.done), daemon=True)
        self.proc.start()

    def run(self) -> tuple[int, float]:
        self.go.set()
        sent, elapsed = self.done.get(timeout=MAX_TRAFFIC_S + 30)
        self.proc.join()
        return sent, elapsed


def sequence(payload: bytes) -> int | None:
    if payload[:8] != MAGIC:
        return None
    return int.from_bytes(payload[8:16], "big")


def frame_sequence(frame: bytes, port: bytes) -> int | None:
    """Sequence number of an Ethernet/IPv4(20)/UDP frame to ``port`` (2 bytes)."""
    if frame[36:38] != port:
        return None
    return sequence(frame[ETH_IP_UDP:])


def read_while_sending(
    source: CaptureSource, packets: Iterator[PacketRecord], port: int, sender: Sender
) -> tuple[set[int], tuple[int, float]]:
    """Read ``packets`` in a thread while the sender runs; close once idle."""
    seen: set[int] = set()
    last = [time.monotonic()]
    port_bytes = port.to_bytes(2, "big")

    def reader() -> None:
        add = seen.add
        for record in packets:
            seq = frame_sequence(record.data, port_bytes)
            if seq is not None:
                add(seq)
                last[0] = time.monotonic()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sent = sender.run()
    wait_idle(last, sent[1])
    source.close()
    thread.join(10)
    return seen, sent


def wait_idle(last: list[float], traffic_s: float) -> None:
    deadline = time.monotonic() + max(10.0, 5 * traffic_s)
    while time.monotonic() - last[0] < IDLE_S and time.monotonic() < deadline:
        time.sleep(0.1)


def bench_dumpcap(port: int, rate: int, seconds: float) -> Result:
    sender = Sender(port, rate, seconds)
    source = DumpcapSource("lo", bpf=f"udp dst port {port}", buffer_mb=32)
    source.start()
    seen, (sent, elapsed) = read_while_sending(source, source.packets(), port, sender)
    return Result("DumpcapSource", sent / elapsed, sent, len(seen), source.stats().dropped_kernel)


def bench_af_packet(port: int, rate: int, seconds: float, ignore_outgoing: bool) -> Result:
    sender = Sender(port, rate, seconds)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)  # as dumpcap -B 32
    if ignore_outgoing:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.bind(("lo", 0))
    sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets the counters
    seen: set[int] = set()
    last = [time.monotonic()]
    stop = threading.Event()
    port_bytes = port.to_bytes(2, "big")

    def reader() -> None:
        sock.settimeout(0.1)
        recvfrom, add = sock.recvfrom, seen.add
        while not stop.is_set():
            try:
                frame, address = recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            seq = frame_sequence(frame, port_bytes)
            if seq is not None:
                add(seq)
                last[0] = time.monotonic()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sent, elapsed = sender.run()
    wait_idle(last, elapsed)
    stop.set()
    thread.join(10)
    _, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    sock.close()
    name = "AF_PACKET, no out" if ignore_outgoing else "AF_PACKET recvfrom"
    return Result(name, sent / elapsed, sent, len(seen), drops)


def bench_pyshark(port: int, rate: int, seconds: float) -> Result:
    source = PysharkSource("lo", bpf=f"udp dst port {port}")
    packets = warm_up(source, port)
    sender = Sender(port, rate, seconds)
    seen, (sent, elapsed) = read_while_sending(source, packets, port, sender)
    return Result("PysharkSource", sent / elapsed, sent, len(seen), source.stats().dropped_kernel)


def warm_up(source: PysharkSource, port: int) -> Iterator[PacketRecord]:
    """Send until pyshark shows a packet: its dumpcap opens the interface late."""
    packets = source.packets()
    first = threading.Event()

    def probe() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not first.wait(0.05):
                sock.sendto(b"warm-up", ("127.0.0.1", port))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    next(packets)
    first.set()
    thread.join()
    return packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50000,150000", help="offered packets/s for dumpcap and AF_PACKET")
    parser.add_argument("--seconds", type=float, default=1.2, help="traffic per fast run")
    parser.add_argument("--pyshark-rate", type=int, default=2000)
    parser.add_argument("--pyshark-seconds", type=float, default=2.0)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    if os.geteuid() != 0:
        parser.error("live capture needs root")
    if max(rates + [args.pyshark_rate]) > MAX_RATE:
        parser.error(f"rates are capped at {MAX_RATE} packets/s")
    if 3 * len(rates) * args.seconds + args.pyshark_seconds > MAX_TRAFFIC_S:
        parser.error(f"at most {MAX_TRAFFIC_S:g} s of traffic in all")

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # owns the port; no ICMP back
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    print(f"loopback UDP to 127.0.0.1:{port}, {len(MAGIC) + 8}-byte payloads, {os.cpu_count()} CPUs")

    results = []
    for rate in rates:
        results.append(bench_dumpcap(port, rate, args.seconds))
        results.append(bench_af_packet(port, rate, args.seconds, ignore_outgoing=False))
        results.append(bench_af_packet(port, rate, args.seconds, ignore_outgoing=True))
    results.append(bench_pyshark(port, args.pyshark_rate, args.pyshark_seconds))
    receiver.close()

    print(f"\n{'source':<20}{'offered pkts/s':>16}{'sent':>10}{'received %':>12}{'reported drops':>16}")
    for r in results:
        drops = "n/a" if r.drops is None else f"{r.drops:,}"
        print(f"{r.source:<20}{r.offered_pps:>16,.0f}{r.sent:>10,}{100 * r.received / r.sent:>12.2f}{drops:>16}")


if __name__ == "__main__":
    main()
