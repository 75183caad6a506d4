"""From a blocking capture source to the asyncio pipeline: a thread, a bounded buffer, a wake-up.

Capture sources are blocking iterators (a file read, dumpcap's pipe,
pyshark's queue). The pump iterates one in its own thread and appends each
record to a buffer the pipeline drains in chunks. The buffer is bounded:
when the pipeline falls behind, the thread waits, so a file pauses and a
live capture's backlog builds in dumpcap's and the kernel's buffers, whose
drops are counted there. Waking the loop costs a cross-thread call only
when the pipeline is actually waiting for packets.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from netgptd.capture.records import CaptureSource, PacketRecord

NS = 1_000_000_000


class CapturePump:
    """Runs ``source`` in a thread; ``await next_chunk()`` hands its records over.

    ``speed`` > 0 paces the records by their timestamps (1 = as captured,
    2 = twice as fast), for replaying a file as if it were live.
    """

    def __init__(self, source: CaptureSource, loop: asyncio.AbstractEventLoop, capacity: int = 65536,
                 speed: float = 0.0) -> None:  # fmt: skip
        self.source = source
        self.capacity = capacity
        self.speed = speed
        self.error: BaseException | None = None
        self.finished = False
        self._loop = loop
        self._buffer: deque[PacketRecord] = deque()
        self._room = threading.Event()
        self._room.set()
        self._stop = threading.Event()
        self._wakeup = asyncio.Event()
        self._consumer_waiting = False
        self._thread = threading.Thread(target=self._run, name=f"capture {getattr(source, 'name', '')}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._buffer)

    def _pace(self, record: PacketRecord, origin: list[float]) -> None:
        if not origin:
            origin.extend((time.monotonic(), record.ts_ns / NS))
            return
        due = origin[0] + (record.ts_ns / NS - origin[1]) / self.speed
        while not self._stop.is_set() and (delay := due - time.monotonic()) > 0:
            self._stop.wait(min(delay, 0.25))

    def _run(self) -> None:
        origin: list[float] = []
        try:
            for record in self.source.packets():
                if self._stop.is_set():
                    break
                if self.speed > 0:
                    self._pace(record, origin)
                self._buffer.append(record)
                if len(self._buffer) >= self.capacity:
                    self._room.clear()
                    while len(self._buffer) >= self.capacity and not self._stop.is_set():
                        self._room.wait(0.1)
                if self._consumer_waiting:
                    self._consumer_waiting = False
                    self._loop.call_soon_threadsafe(self._wakeup.set)
        except BaseException as exc:  # handed to the pipeline, which reports it
            self.error = exc
        finally:
            if not self.source.live:
                self.source.close()
            self.finished = True
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # the loop is closed: nobody is waiting
                pass

    async def next_chunk(self, limit: int = 1024) -> list[PacketRecord] | None:
        """Up to ``limit`` records, waiting for at least one; None once the source has ended and all is taken."""
        buffer = self._buffer
        while not buffer:
            if self.finished and not buffer:
                return None
            self._wakeup.clear()
            self._consumer_waiting = True  # set before looking again: a record appended now wakes us
            if buffer or self.finished:
                continue
            await self._wakeup.wait()
        chunk = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        if len(buffer) < self.capacity // 2:
            self._room.set()
        return chunk

    def stop(self) -> None:
        """Ask the thread to stop (a live source is closed to end its wait); what is buffered can still be taken."""
        self._stop.set()
        self._room.set()
        if self.source.live:
            self.source.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
