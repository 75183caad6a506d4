"""Work off the pipeline's loop thread, whose events are handed on in the order the work was given.

Shared by the plugins that run model work per window (``trends``,
``intents``). Jobs run one at a time in a one-thread executor. When the host
gives ``SensorContext.emit`` and ``netgpt_start`` runs in a loop, a finished
job makes the loop (``call_soon_threadsafe``) emit the events of every job
finished so far, oldest first, stopping at the first one still running: so
events always leave in submission order, and only from the loop thread.
Without ``emit`` or a loop (a bare host, tests), the owner collects them
with :meth:`OrderedOffload.finished` (e.g. on its next flow or stats event).

A job's result is turned into events in the loop thread by the owner's
``collect`` (so counters and state it touches need no lock); a result that
is already a list is taken as the events themselves (:meth:`later`). A job
that raised goes to ``failed``. Jobs still queued or running at
:meth:`close` are dropped: their events have nowhere to go.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from netgptd.plugin_host import SensorContext

Event = dict[str, Any]
Emit = Callable[[Event], None]

# SensorContext.emit's default: a host that hands plugins no way to emit later.
NO_EMIT = next((f.default for f in dataclasses.fields(SensorContext) if f.name == "emit"), None)


class OrderedOffload:
    """A one-thread executor whose jobs' events are handed on in submission order (see the module docstring)."""

    def __init__(self, name: str, collect: Callable[[Any], list[Event]],
                 failed: Callable[[BaseException], None]) -> None:  # fmt: skip
        self.name = name
        self._collect, self._failed = collect, failed
        self.pending: deque[Future[Any]] = deque()  # in submission order; done or not, not yet handed on
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emit: Emit | None = None

    def start(self, sensor: SensorContext) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # started outside a loop: the owner collects with finished()
            self._loop = None
        emit = getattr(sensor, "emit", None)
        self._emit = emit if self._loop is not None and emit is not None and emit is not NO_EMIT else None

    @property
    def started(self) -> bool:
        return self._executor is not None

    @property
    def emits(self) -> bool:
        """Whether finished jobs are emitted by the loop (else: collect them with :meth:`finished`)."""
        return self._emit is not None

    @property
    def running(self) -> int:
        """Jobs submitted and not finished yet."""
        return sum(not f.done() for f in self.pending)

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in the executor; its events follow those of every earlier job."""
        assert self._executor is not None, "not started"
        future = self._executor.submit(function, *args)
        self.pending.append(future)
        if self._emit is not None:
            future.add_done_callback(self._on_done)
        return future

    def later(self, events: list[Event], position: int | None = None) -> None:
        """Emit ``events`` from the loop soon (after the hook call now running), as a job already
        finished at ``position`` in the queue (default: last). Only when :attr:`emits`."""
        assert self._loop is not None and self._emit is not None
        done: Future[list[Event]] = Future()
        done.set_result(events)
        if position is None:
            self.pending.append(done)
        else:
            self.pending.insert(position, done)
        self._loop.call_soon(self._deliver)

    def finished(self) -> list[Event]:
        """The events of the jobs finished so far, in submission order (up to the first still running)."""
        events: list[Event] = []
        while self.pending and self.pending[0].done():
            future = self.pending.popleft()
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 -- the owner counts and logs it
                self._failed(exc)
                continue
            events += result if isinstance(result, list) else self._collect(result)
        return events

    def riding_on(self, event_type: object) -> list[Event]:
        """Without emit, finished events leave on the pipeline's own flow and stats
        events, whose raised events the host passes on (not on alerts, which a
        plugin may have raised); with emit they go out by themselves: none here."""
        if self.emits or event_type not in ("flow", "stats"):
            return []
        return self.finished()

    def close(self) -> int:
        """Stop taking jobs and drop those not handed on; how many were still queued or running."""
        lost = self.running
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)  # a running job finishes in its thread
            self._executor = None
        self.pending.clear()
        return lost

    def _on_done(self, future: Future[Any]) -> None:
        """In the executor's thread: have the loop emit what finished."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: the daemon has stopped
            pass

    def _deliver(self) -> None:
        """In the loop thread: emit the finished jobs' events, in submission order."""
        if self._executor is None or self._emit is None:  # closed meanwhile
            return
        for event in self.finished():
            if self._executor is None:  # an emit closed us (a plugin restart)
                return
            self._emit(event)
