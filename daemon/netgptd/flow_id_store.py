"""The flow ids a sensor has reserved, kept in its state directory so that a restart starts above them.

One small file, ``flow-ids``, holds one integer: the ceiling below which
this sensor may have given out ids. It is rewritten (a temporary file, then
an atomic rename) whenever fewer than half of ``RESERVE`` ids remain below
it, so a sensor killed at any moment has given out no id at or above the
ceiling on disk, and the next run starts there (:func:`first_flow_id`).
A file that cannot be read or written costs only that guarantee: it is
logged once per change and the clock alone orders the runs, as without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from netgptd.files import FILE_MODE, describe, make_dirs
from netgptd.flow_ids import RESERVE

log = structlog.get_logger(__name__)

FILE = "flow-ids"


class FlowIdStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self.reserved = 0  # the ceiling last written
        self._failing = False

    def load(self) -> int:
        """The ceiling an earlier run reserved (0 when there is none, or it cannot be read)."""
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            detail = describe(exc) if isinstance(exc, OSError) else "not a number"
            log.warning("flow_ids_unreadable", path=str(self.path), error=detail)
            return 0

    def reserve(self, next_id: int) -> None:
        """Keep at least ``RESERVE // 2`` ids from ``next_id`` on reserved on disk."""
        if next_id + RESERVE // 2 <= self.reserved:
            return
        ceiling = next_id + RESERVE
        temporary = self.path.with_name(f".{FILE}.tmp")
        try:
            make_dirs(self.path.parent)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
            try:
                os.write(fd, f"{ceiling}\n".encode("ascii"))
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:
            if not self._failing:
                log.warning("flow_ids_unwritable", path=str(self.path), error=describe(exc),
                            detail="restarts are ordered by the clock alone")  # fmt: skip
                self._failing = True
            return
        if self._failing:
            log.info("flow_ids_writable", path=str(self.path))
            self._failing = False
        self.reserved = ceiling
