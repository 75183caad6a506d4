"""Live capture on loopback through dumpcap and through pyshark (needs root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netgptd.capture.dumpcap_source import CaptureStartError, DumpcapSource
from netgptd.capture.pyshark_source import PysharkSource
from netgptd.capture.records import CaptureSource, PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import PROTO_UDP, DecodeError, NotIP

COUNT = 200
SEEN_TIMEOUT_S = 20.0

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.skipif(not os.path.exists("/sys/class/net/lo"), reason="no loopback interface 'lo'"),
    pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed"),
]
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def udp_payload(record: PacketRecord, port: int) -> bytes | None:
    """The payload of a UDP datagram to ``port``, else None."""
    try:
        packet = decode(record)
    except (DecodeError, NotIP):
        return None
    if packet.proto != PROTO_UDP or packet.dport != port:
        return None
    return packet.data[packet.payload_off : packet.end]


def proc_stat(pid: int) -> tuple[str, int, str, int] | None:
    """(comm, ppid, state, start time) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rpartition(")")[2].split()
    return comm, int(fields[1]), fields[0], int(fields[19])


def capture_processes() -> dict[int, tuple[str, int]]:
    """dumpcap/tshark processes below this one: pid -> (comm, start time)."""
    stats = {int(p): proc_stat(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    family, found = {os.getpid()}, {}
    grew = True
    while grew:
        grew = False
        for pid, stat in stats.items():
            if stat and stat[1] in family and pid not in family:
                family.add(pid)
                grew = True
                if stat[0] in ("dumpcap", "tshark") and stat[2] != "Z":
                    found[pid] = (stat[0], stat[3])
    return found


def still_alive(procs: dict[int, tuple[str, int]]) -> list[str]:
    alive = []
    for pid, (comm, start) in procs.items():
        stat = proc_stat(pid)
        if stat and stat[3] == start and stat[2] != "Z":
            alive.append(f"{comm}[{pid}]")
    return alive


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    """A bound UDP socket, so the test owns its port and gets no ICMP back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


class Collector:
    """Reads a source in a thread and keeps the distinct payloads to ``port``.

    Loopback may show a frame twice (outgoing and incoming), hence a dict.
    """

    def __init__(self, source: CaptureSource, port: int) -> None:
        self.source, self.port = source, port
        self.payloads: dict[bytes, int] = {}  # payload -> ts_ns
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for record in self.source.packets():
                payload = udp_payload(record, self.port)
                if payload is not None:
                    self.payloads[payload] = record.ts_ns
        except BaseException as exc:  # re-raised in the test thread
            self.error = exc

    def wait_for(self, wanted: set[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= self.payloads.keys() and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "packets() did not end after close()"
        if self.error is not None:
            raise self.error


def send_all(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", port))


def test_dumpcap_sees_every_datagram(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    began_ns = time.time_ns()
    source = DumpcapSource("lo", bpf=f"udp dst port {port}")
    source.start()  # returns once dumpcap has opened the interface
    collector = Collector(source, port)
    procs = capture_processes()
    assert [comm for comm, _ in procs.values()] == ["dumpcap"]
    try:
        wanted = [b"dumpcap-%04d" % i for i in range(COUNT)]
        send_all(port, wanted)
        collector.wait_for(set(wanted), SEEN_TIMEOUT_S)
    finally:
        source.close()
    collector.join()
    assert set(wanted) - collector.payloads.keys() == set()
    assert all(began_ns <= collector.payloads[p] <= time.time_ns() for p in wanted)
    assert still_alive(procs) == []
    assert proc_stat(next(iter(procs))) is None, "dumpcap was not reaped"
    stats = source.stats()
    assert stats.received is not None and stats.received >= COUNT
    assert stats.dropped_kernel == 0
    source.close()  # idempotent


def test_dumpcap_unknown_interface_is_one_readable_error() -> None:
    with pytest.raises(CaptureStartError, match="ngd-nosuch0") as info:
        DumpcapSource("ngd-nosuch0").start()
    assert "Traceback" not in str(info.value)
    assert capture_processes() == {}


def test_dumpcap_missing_binary_is_one_readable_error() -> None:
    with pytest.raises(CaptureStartError, match="cannot run /nonexistent/dumpcap: No such file"):
        DumpcapSource("lo", dumpcap="/nonexistent/dumpcap").start()


@needs_tshark
def test_pyshark_sees_every_datagram(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    began_ns = time.time_ns()
    temp_before = set(glob.glob("/tmp/wireshark_*"))
    source = PysharkSource("lo", bpf=f"udp dst port {port}")
    source.start()
    collector = Collector(source, port)
    try:
        deadline = time.monotonic() + SEEN_TIMEOUT_S
        while b"warm-up" not in collector.payloads and time.monotonic() < deadline:
            send_all(port, [b"warm-up"])
            time.sleep(0.05)
        assert b"warm-up" in collector.payloads, "pyshark saw no warm-up packet"
        procs = capture_processes()
        assert sorted(comm for comm, _ in procs.values()) == ["dumpcap", "dumpcap", "tshark"]
        wanted = [b"pyshark-%04d" % i for i in range(COUNT)]
        send_all(port, wanted)
        collector.wait_for(set(wanted), SEEN_TIMEOUT_S)
    finally:
        source.close()
    collector.join()
    assert set(wanted) - collector.payloads.keys() == set()
    assert all(began_ns <= collector.payloads[p] <= time.time_ns() for p in wanted)
    assert still_alive(procs) == []
    assert set(glob.glob("/tmp/wireshark_*")) - temp_before == set()
    received = source.stats().received
    assert received is not None and received >= COUNT
    source.close()  # idempotent


@needs_tshark
def test_pyshark_unknown_interface_is_one_readable_error() -> None:
    with pytest.raises(CaptureStartError, match="ngd-nosuch0"):
        PysharkSource("ngd-nosuch0").start()
    assert still_alive(capture_processes()) == []
