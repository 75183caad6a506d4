"""Live capture through a dumpcap child process that writes pcapng to a pipe.

dumpcap does the privileged, buffered part (a TPACKET_V3 ring, ``-B`` MiB of
kernel buffer); this process only parses the pcapng stream. Packets arrive
in batches as the kernel ring hands over a block: at the latest after
dumpcap's 250 ms block timeout on a quiet link.

Drop counters are only known when dumpcap stops: dumpcap has no way to report
them while it writes to a pipe (``-S`` is a separate statistics-only mode that
captures nothing). On exit it writes a pcapng interface statistics block and
a summary line on stderr::

    Packets received/dropped on interface 'Loopback: lo': 5/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)

On loopback the kernel drop count includes the outgoing copy of each packet
(libpcap discards those after the ring), so it can exceed the packets sent.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
from typing import BinaryIO, Iterator

import structlog

from netgptd.capture.file_source import read_stream
from netgptd.capture.pcap_format import CaptureFormatError, CaptureParser
from netgptd.capture.records import CaptureStats, PacketRecord

log = structlog.get_logger(__name__)

# Small reads: a pipe read returns what is there, so records come out as soon
# as dumpcap flushes them instead of after a multi-megabyte fill.
READ_CHUNK = 64 << 10
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0

_SUMMARY = re.compile(
    r"Packets received/dropped on interface '.*': (?P<received>\d+)/(?P<dropped>\d+) "
    r"\(pcap:\d+/dumpcap:\d+/flushed:\d+/ps_ifdrop:(?P<ifdrop>\d+)\)"
)
# stderr lines dumpcap prints on every run, failed or not.
_NOISE = re.compile(r"^(Capturing on .*|File: .*|Packets captured: \d+)$")


class CaptureStartError(Exception):
    """dumpcap could not start capturing; the message says why, in dumpcap's words."""


class DumpcapSource:
    """Packets from a live interface, read from ``dumpcap -w -``.

    ``start()`` returns once dumpcap has opened the interface (``packets()``
    calls it if needed); ``close()`` may be called from another thread while
    ``packets()`` is being iterated, which then ends.
    """

    live = True

    def __init__(
        self,
        interface: str,
        bpf: str | None = None,
        snaplen: int = 262144,
        buffer_mb: int = 32,
        dumpcap: str = "dumpcap",
    ) -> None:
        self.interface = interface
        self.name = f"dumpcap:{interface}"
        self.command = [dumpcap, "-i", interface, "-q", "-n", "-w", "-", "-s", str(snaplen), "-B", str(buffer_mb)]
        if bpf:
            self.command += ["-f", bpf]
        self.parser = CaptureParser()
        self.packets_read = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: BinaryIO | None = None
        self._early: list[PacketRecord] = []  # parsed while waiting for the headers
        self._summary: CaptureStats | None = None
        self._closed = False
        # Held by whoever reads dumpcap's stdout: packets(), or close() draining it.
        self._reader = threading.Lock()

    def start(self) -> None:
        """Run dumpcap and wait until it captures, or raise CaptureStartError.

        dumpcap writes the pcapng section and interface headers only after it
        has opened the interface, so their arrival is the signal; its
        "Capturing on ..." line comes before the open and proves nothing.
        """
        if self._proc is not None:
            return
        if self._closed:
            raise CaptureStartError(f"{self.name}: source is closed")
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0
            )
        except OSError as exc:
            self._stderr.close()
            self._stderr = None
            raise CaptureStartError(f"cannot run {self.command[0]}: {exc.strerror or exc}") from None
        try:
            self._await_headers()
        except BaseException:
            self.close()
            raise
        log.info("dumpcap_started", interface=self.interface, pid=self._proc.pid, command=" ".join(self.command))

    def _await_headers(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.parser.linktypes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaptureStartError(
                    f"dumpcap did not start capturing on {self.interface!r} within {START_TIMEOUT_S:g} s"
                    + _suffix(self._stderr_message())
                )
            if not _readable(fd, remaining):
                continue
            data = os.read(fd, READ_CHUNK)
            if not data:
                try:
                    status = self._proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    status = None
                raise CaptureStartError(
                    f"dumpcap cannot capture on {self.interface!r} (exit status {status})"
                    + _suffix(self._stderr_message())
                )
            try:
                self._early.extend(self.parser.feed(data))
            except CaptureFormatError as exc:
                raise CaptureStartError(f"dumpcap on {self.interface!r} wrote no pcapng: {exc}") from None

    def _stderr_text(self) -> str:
        """dumpcap's stderr so far, without the lines every run prints."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").replace("\r", "\n")
        self._stderr.seek(0, os.SEEK_END)
        return text

    def _stderr_message(self) -> str:
        """What dumpcap said that it does not say on every run, as one line."""
        lines = (line.strip() for line in self._stderr_text().splitlines())
        return " ".join(line.removeprefix("dumpcap: ") for line in lines if line and not _NOISE.match(line))

    def packets(self) -> Iterator[PacketRecord]:
        self.start()
        if not self._reader.acquire(blocking=False):
            raise RuntimeError(f"{self.name}: packets() is already being read")
        try:
            if self._closed:
                return
            early, self._early = self._early, []
            for record in early:
                self.packets_read += 1
                yield record
            assert self._proc is not None and self._proc.stdout is not None
            for record in read_stream(self._proc.stdout, self.parser, READ_CHUNK):
                self.packets_read += 1
                yield record
        finally:
            self._reader.release()
        if not self._closed:
            self._reap()
            log.error(
                "dumpcap_exited", interface=self.interface, status=self._proc.returncode, error=self._stderr_message()
            )

    def stats(self) -> CaptureStats:
        """Drops from dumpcap's exit summary, else its statistics block.

        While dumpcap runs neither exists yet, and only ``received`` is known.
        dumpcap files kernel (pcap) drops under the block's ``isb_ifdrop``.
        """
        if self._summary is not None:
            return self._summary
        drops = self.parser.interface_drops.values()
        if drops:
            return CaptureStats(sum(d.received or 0 for d in drops), sum(d.dropped_interface or 0 for d in drops), None)
        return CaptureStats(self.packets_read, None, None)

    def close(self) -> None:
        """Stop dumpcap (SIGTERM, SIGKILL after STOP_TIMEOUT_S) and reap it."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        if self._reader.acquire(blocking=False):
            # Nobody reads the pipe: drain it, or dumpcap may block writing
            # and never reach its statistics.
            try:
                self._drain()
            finally:
                self._reader.release()
        self._reap()
        if self._reader.acquire(timeout=STOP_TIMEOUT_S):
            try:
                assert proc.stdout is not None
                proc.stdout.close()
            finally:
                self._reader.release()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        log.info("dumpcap_stopped", interface=self.interface, status=proc.returncode, stats=self.stats()._asdict())

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0 and _readable(fd, remaining):
            data = os.read(fd, READ_CHUNK)
            if not data:
                return
            try:
                self.parser.feed(data)
            except CaptureFormatError:
                return

    def _reap(self) -> None:
        """Wait for dumpcap (killing it if it ignores SIGTERM) and read its summary."""
        proc = self._proc
        assert proc is not None
        if proc.returncode is None:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("dumpcap_killed", interface=self.interface, pid=proc.pid, after_s=STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()
        if self._summary is None:
            found = list(_SUMMARY.finditer(self._stderr_text()))
            if found:
                self._summary = CaptureStats(
                    sum(int(m["received"]) for m in found),
                    sum(int(m["dropped"]) for m in found),
                    sum(int(m["ifdrop"]) for m in found),
                )


def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has data or end of file within the timeout (poll: no FD_SETSIZE limit)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def _suffix(message: str) -> str:
    return f": {message}" if message else ""
