"""Closed windows kept in SQLite in the state directory, bounded per sensor.

SQLite because the history must survive restarts, be written a row a minute
without rewriting a file, and be trimmed in place. Each window is stored
whole as JSON (its breakdowns by application, attack and alert category vary
from window to window); series are read back through ``Window.value``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import TracebackType

from netgptd.files import create_file
from netgptd.trend.windows import Window

HISTORY_FILE = "trend-history.sqlite3"
DEFAULT_KEEP = 10_080  # a week of one-minute windows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    site TEXT NOT NULL,
    sensor TEXT NOT NULL,
    start REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, sensor, start)
)
"""


class WindowHistory:
    """The last ``keep`` windows of every (site, sensor), in ``state_dir``."""

    def __init__(self, state_dir: Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.path = state_dir / HISTORY_FILE
        self.keep = keep
        self._db = sqlite3.connect(create_file(self.path))  # 0640, its folders 0750
        with self._db:
            self._db.execute(_SCHEMA)

    def append(self, window: Window) -> None:
        """Store a closed window, then drop that sensor's windows beyond the last ``keep``.

        A window whose start is already stored (a partial window flushed at
        shutdown, continued after the restart) is merged into the stored one.
        """
        key = (window.site, window.sensor)
        with self._db:
            row = self._db.execute("SELECT body FROM windows WHERE site = ? AND sensor = ? AND start = ?",
                                   (*key, window.start)).fetchone()  # fmt: skip
            if row is not None:
                stored = Window.from_dict(json.loads(row[0]))
                stored.merge(window)
                window = stored
            self._db.execute("INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                             (*key, window.start, json.dumps(window.to_dict(), separators=(",", ":"))))  # fmt: skip
            self._db.execute(
                "DELETE FROM windows WHERE site = ? AND sensor = ? AND start <= "
                "(SELECT start FROM windows WHERE site = ? AND sensor = ? ORDER BY start DESC LIMIT 1 OFFSET ?)",
                (*key, *key, self.keep),
            )

    def windows(self, site: str = "default", sensor: str = "sensor", last_n: int | None = None) -> list[Window]:
        """The stored windows of one sensor, oldest first (the last ``last_n`` of them)."""
        rows = self._db.execute("SELECT body FROM windows WHERE site = ? AND sensor = ? ORDER BY start DESC LIMIT ?",
                                (site, sensor, -1 if last_n is None else last_n)).fetchall()  # fmt: skip
        return [Window.from_dict(json.loads(body)) for (body,) in reversed(rows)]

    def series(self, metric: str, key: str | None = None, last_n: int | None = None,
               site: str = "default", sensor: str = "sensor") -> list[tuple[float, float]]:  # fmt: skip
        """``(window start, value)`` pairs, oldest first; ``metric`` and ``key`` as in ``Window.value``."""
        return [(w.start, w.value(metric, key)) for w in self.windows(site, sensor, last_n)]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> WindowHistory:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
