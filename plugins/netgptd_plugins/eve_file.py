"""EVE file sink: every event as one JSON line, to a file or to stdout ('-').

Lines reach the file at most ``flush_delay`` seconds after their event (or
sooner, every ``FLUSH_BYTES``): a killed daemon loses that window at most,
and a quiet sensor's alert does not sit in a buffer. Without a running loop
(``netgptd replay``) they go out every ``FLUSH_BYTES`` and at close.

The file is opened without following a symbolic link and, when new, with
mode 0640 (:mod:`netgptd.files`). A line is in the file whole or not at all
(:mod:`netgptd.linefile`). A full disk is a degraded state (lines counted
as lost, ``disk_full`` in the status); any other write error (a read-only
or vanished file system, a closed descriptor) makes the plugin dead, so
systemd restarts the daemon. Each change is logged once. SIGHUP reopens the
file, for logrotate.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path
from typing import Any

import structlog

from netgptd.eve import dumps
from netgptd.files import describe
from netgptd.linefile import LineFile, StreamLines
from netgptd.plugin_host import SensorContext, hookimpl

log = structlog.get_logger(__name__)

FLUSH_BYTES = 64 * 1024
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


MAX_FLUSH_DELAY = 1.0  # seconds: what kill -9 may lose, and how late a line may follow its metrics


class EveFilePlugin:
    """Appends by default, as Suricata does with eve.json; ``append=False`` starts afresh."""

    LOGS_EACH_FLOW = True  # a flood's flows come bounded, with summaries (netgptd.flood_log)

    def __init__(self, path: str = "-", append: bool = True, flush_delay: float = 0.5) -> None:
        if not 0 <= flush_delay <= MAX_FLUSH_DELAY:  # beyond it, a quiet sensor's alert would wait in a buffer
            raise ValueError(f"flush_delay: must be between 0 and {MAX_FLUSH_DELAY:g} s, got {flush_delay}")
        self.path = path
        self.flush_delay = flush_delay
        self.out: LineFile | StreamLines
        if path == "-":
            self.out = StreamLines(sys.stdout)
        else:
            try:
                self.out = LineFile(Path(path), truncate=not append)
            except OSError as exc:
                raise ValueError(f"path: {path}: {describe(exc)}") from None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._error: OSError | None = None  # the last write's error, until a write succeeds

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self._loop = asyncio.get_running_loop()

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        self.netgpt_events([event])

    @hookimpl
    def netgpt_events(self, events: list[dict[str, Any]]) -> None:
        add = self.out.add
        for event in events:
            add(dumps(event) + b"\n")
        if self.out.buffered >= FLUSH_BYTES or not self.flush_delay:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.flush_delay, self.flush)

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        return {"written": self.out.written, "lost": self.out.lost, "disk_full": int(self._disk_full())}

    @hookimpl
    def netgpt_health(self) -> str | None:
        if self._error is None or self._disk_full():
            return None
        return f"cannot write {self.path}: {describe(self._error)}"

    @hookimpl
    def netgpt_reopen(self) -> None:
        self.flush()
        try:
            self.out.reopen()
        except OSError as exc:
            log.error("eve_reopen_failed", path=self.path, error=describe(exc), detail="still writing the open file")

    @hookimpl
    def netgpt_close(self) -> None:
        self.flush()
        self.out.close()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.out.buffered:
            self._report(self.out.flush())

    def _disk_full(self) -> bool:
        return self._error is not None and self._error.errno in DISK_FULL

    def _report(self, error: OSError | None) -> None:
        """Log a change between writing, disk full and failing (once each time)."""
        before = self._error
        self._error = error
        if error is None:
            if before is not None:
                log.info("eve_write_resumed", path=self.path, lost=self.out.lost)
        elif before is None or (before.errno in DISK_FULL) != (error.errno in DISK_FULL):
            if error.errno in DISK_FULL:
                log.warning("eve_disk_full", path=self.path, error=describe(error), detail="lines are counted as lost")
            else:
                log.error("eve_write_failed", path=self.path, error=describe(error))
