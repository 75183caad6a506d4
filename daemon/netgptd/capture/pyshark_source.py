"""Live capture through pyshark: tshark's dissectors, far slower than dumpcap.

pyshark runs ``dumpcap -w - | tshark -T json -x -i -``, and tshark starts a
dumpcap of its own that copies the pipe into a ``/tmp/wireshark_*.pcapng``
temporary file. pyshark's own close() SIGKILLs tshark, which orphans that
second dumpcap and leaves the file behind; and if this process dies, both
dumpcaps are orphaned. So close() here asks tshark to stop with SIGTERM (it
then stops its dumpcap and deletes the file), and afterwards kills whatever
it recorded of the process tree and deletes the temporary files it recorded.

pyshark's capture runs on its own event loop in a background thread and
feeds a bounded queue, so ``packets()`` is a plain generator; a slow consumer
stalls tshark and the loss shows up where it would anyway, in the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pyshark
import structlog
from pyshark.tshark.output_parser.tshark_json import TsharkJsonParser

from netgptd.capture.dumpcap_source import CaptureStartError
from netgptd.capture.records import CaptureStats, PacketRecord

log = structlog.get_logger(__name__)

QUEUE_SIZE = 4096
START_TIMEOUT_S = 20.0  # tshark loads every dissector before it starts its dumpcap
STOP_TIMEOUT_S = 5.0
_POLL_S = 0.05

# tshark reports wiretap's WTAP_ENCAP_* numbers (frame.encap_type), not LINKTYPE_*.
WTAP_ENCAP_TO_LINKTYPE = {
    1: 1,  # Ethernet (also Linux loopback)
    4: 9,  # PPP
    7: 101,  # raw IP
    15: 0,  # BSD null/loopback
    20: 105,  # IEEE 802.11
    23: 127,  # 802.11 radiotap
    25: 113,  # Linux cooked (SLL)
    28: 104,  # Cisco HDLC
    129: 228,  # raw IPv4
    130: 229,  # raw IPv6
    141: 239,  # NFLOG
    174: 108,  # OpenBSD loopback
    210: 276,  # Linux cooked v2 (SLL2)
}

_END = object()


class _PromptJsonParser(TsharkJsonParser):
    """Hands over each packet as soon as tshark has written all of it.

    tshark ends a packet's JSON object with a newline, two spaces and ``}``,
    and writes the ``,`` after it only when the next packet comes; pyshark
    waits for that comma, so on a quiet link the last packet would sit in
    the buffer indefinitely. Only whole packets close at two spaces of
    indentation, and JSON strings hold no raw newlines, so the marker is
    unambiguous.
    """

    def _extract_packet_from_data(self, data: bytes, got_first_packet: bool = True) -> tuple[bytes | None, bytes]:
        start = data.find(b"{")
        end = data.find(b"\n  }", start)
        if start == -1 or end == -1:
            return None, data
        return data[start : end + 4], data[end + 4 :]


class _PromptLiveCapture(pyshark.LiveCapture):  # type: ignore[misc]
    """LiveCapture with the prompt parser, letting a tshark told to stop exit."""

    stopping_pid: int | None = None

    def _setup_tshark_output_parser(self) -> TsharkJsonParser:
        return _PromptJsonParser(self._get_tshark_version())

    async def _cleanup_subprocess(self, process: Any) -> None:
        if process.pid == self.stopping_pid and process.returncode is None:
            # pyshark would kill() it at once, and kill() first polls: a tshark
            # that has just exited gets reaped there, behind the back of
            # asyncio's child watcher ("Unknown child process pid ...").
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        await super()._cleanup_subprocess(process)


class PysharkSource:
    """Packets from a live interface, read through pyshark.LiveCapture."""

    live = True

    def __init__(self, interface: str, bpf: str | None = None) -> None:
        self.interface = interface
        self.bpf = bpf
        self.name = f"pyshark:{interface}"
        self.packets_read = 0
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._capture: Any = None  # pyshark.LiveCapture, created in the thread
        self._tshark_pid: int | None = None
        self._procs: dict[int, int] = {}  # pid -> start time, to survive pid reuse
        self._temp_files: set[str] = set()
        self._pipe: str | None = None  # "pipe:[inode]" pyshark leaves open here
        self._unknown_encaps: set[int] = set()

    def start(self) -> None:
        """Start the capture thread; return once tshark's dumpcap is running.

        The first packets may still be lost while dumpcap opens the interface.
        """
        if self._thread is not None:
            return
        if self._closed:
            raise CaptureStartError(f"{self.name}: source is closed")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            error = self._error
            self.close()
            reason = "timed out"
            if error is not None:  # pyshark's messages may go on for lines (every interface name)
                first_line = str(error).partition("\n")[0]
                reason = f"{type(error).__name__}: {first_line}"
            raise CaptureStartError(f"pyshark cannot capture on {self.interface!r}: {reason}")
        log.info(
            "pyshark_started", interface=self.interface, pids=sorted(self._procs), temp_files=sorted(self._temp_files)
        )

    def packets(self) -> Iterator[PacketRecord]:
        self.start()
        while True:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)  # for any later or parallel reader
                return
            yield item

    def stats(self) -> CaptureStats:
        """pyshark reports no drop counters; only ``received`` is known."""
        return CaptureStats(self.packets_read, None, None)

    def close(self) -> None:
        """Stop tshark gracefully, then kill and delete whatever is left of its own."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._thread is None:
            return
        self._track()
        if self._tshark_pid is not None and self._alive(self._tshark_pid):
            self._capture.stopping_pid = self._tshark_pid
            os.kill(self._tshark_pid, signal.SIGTERM)
        self._thread.join(STOP_TIMEOUT_S)
        killed = self._kill_leftovers()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        removed = [path for path in self._temp_files if _unlink(path)]
        self._close_leaked_pipe()
        log.info(
            "pyshark_stopped",
            interface=self.interface,
            packets=self.packets_read,
            killed=killed,
            removed_temp_files=removed,
            thread_alive=self._thread.is_alive(),
        )

    # -- capture thread ------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # reported by start(), or logged below
            self._error = exc
            if self._ready.is_set() and not self._stopping.is_set():
                log.error("pyshark_failed", interface=self.interface, error=f"{type(exc).__name__}: {exc}")
        finally:
            loop.close()
            self._ready.set()
            self._put_end()

    async def _main(self) -> None:
        capture = _PromptLiveCapture(
            interface=self.interface,
            bpf_filter=self.bpf,
            use_json=True,
            include_raw=True,
            eventloop=asyncio.get_running_loop(),
        )
        self._capture = capture
        run = asyncio.ensure_future(capture.packets_from_tshark(self._on_packet))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not run.done() and not self._stopping.is_set() and time.monotonic() < deadline:
            if self._track():
                self._ready.set()
                break
            await asyncio.sleep(_POLL_S)
        if not self._ready.is_set():
            run.cancel()  # closed or timed out before tshark was up
        try:
            await run
        except asyncio.CancelledError:
            pass
        finally:
            # packets_from_tshark skips its cleanup when tshark fails to start
            # (or is cancelled) after it has started its dumpcap.
            with contextlib.suppress(Exception):
                await capture.close_async()

    def _on_packet(self, packet: Any) -> None:
        if self._stopping.is_set():
            return  # tshark is being stopped; close() discards the rest
        record = self._record(packet)
        if record is None:
            return
        while True:
            try:
                self._queue.put(record, timeout=_POLL_S)
            except queue.Full:
                if self._stopping.is_set():
                    return
            else:
                self.packets_read += 1
                return

    def _record(self, packet: Any) -> PacketRecord | None:
        frame = packet.frame_info
        encap = int(frame.encap_type)
        linktype = WTAP_ENCAP_TO_LINKTYPE.get(encap)
        if linktype is None:
            if encap not in self._unknown_encaps:
                self._unknown_encaps.add(encap)
                log.warning("pyshark_unknown_encap", interface=self.interface, encap_type=encap)
            return None
        # Same bytes as packet.get_raw_packet(), which joins them one byte at a time.
        data = bytes.fromhex(packet.frame_raw.value)
        # time_epoch is a decimal string with nanoseconds; a float would lose them.
        ts_ns = int(Decimal(frame.time_epoch) * 1_000_000_000)
        return PacketRecord(ts_ns, linktype, data, int(frame.len), int(frame.interface_id or 0))

    def _put_end(self) -> None:
        while True:
            try:
                self._queue.put(_END, timeout=_POLL_S)
                return
            except queue.Full:
                if self._stopping.is_set():
                    _clear(self._queue)

    # -- process bookkeeping -----------------------------------------------

    def _track(self) -> bool:
        """Record pyshark's processes, tshark's dumpcap and the files they hold.

        Returns whether tshark's dumpcap has opened its temporary file (tshark
        first runs short-lived helpers). Called from both threads; it only adds
        entries. pyshark has no public way to name its processes.
        """
        capture = self._capture
        if capture is None:
            return False
        for proc in capture._running_processes.copy():
            self._remember(proc.pid)
            comm = _read(f"/proc/{proc.pid}/comm").strip()
            if comm == "tshark":
                self._tshark_pid = proc.pid
            elif comm == "dumpcap" and self._pipe is None:
                self._pipe = _readlink(f"/proc/{proc.pid}/fd/1")
        if self._tshark_pid is None:
            return False
        for pid in _children(self._tshark_pid):
            self._remember(pid)
            for fd in _listdir(f"/proc/{pid}/fd"):
                target = _readlink(f"/proc/{pid}/fd/{fd}")
                if target and target.startswith("/") and Path(target).name.startswith("wireshark_"):
                    self._temp_files.add(target)
        return bool(self._temp_files)

    def _remember(self, pid: int) -> None:
        start = _start_time(pid)
        if start is not None:
            self._procs.setdefault(pid, start)

    def _alive(self, pid: int) -> bool:
        start = _start_time(pid)
        return start is not None and start == self._procs.get(pid)

    def _kill_leftovers(self) -> list[int]:
        """SIGKILL recorded processes that outlived the graceful stop."""
        killed = []
        for pid in self._procs:
            if self._alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(self._alive(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        return killed

    def _close_leaked_pipe(self) -> None:
        """Close our copies of the dumpcap-to-tshark pipe, which pyshark never closes."""
        if self._pipe is None or not self._pipe.startswith("pipe:"):
            return
        for fd in _listdir("/proc/self/fd"):
            if _readlink(f"/proc/self/fd/{fd}") == self._pipe:
                try:
                    os.close(int(fd))
                except OSError:
                    pass


def _start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process, or None."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _children(pid: int) -> list[int]:
    children = []
    for entry in _listdir("/proc"):
        if entry.isdigit():
            fields = _read(f"/proc/{entry}/stat").rpartition(")")[2].split()
            if len(fields) > 1 and fields[1] == str(pid):
                children.append(int(entry))
    return children


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _clear(q: queue.Queue[Any]) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
