"""A bounded, on-disk FIFO of messages waiting to be published.

Pure storage on SQLite: the MQTT plugin puts what must not be lost (alerts,
intents, answers) here, publishes from the oldest end and removes a row
only once the broker has acknowledged it, so an outage or a restart of the
daemon loses nothing the bound allows to keep.

WAL with ``synchronous=NORMAL``: each ``put`` is its own committed
transaction, which survives a crash of the process (not necessarily a power
cut) without an fsync per row. When full, the oldest rows go first, as the
newest alerts are the ones worth having; how many went is kept in the
database too, so the count survives restarts.

Not thread-safe: one owner (the pipeline's asyncio loop) uses it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so order and ack ids stay unambiguous
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


class Item(NamedTuple):
    row_id: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """``max_items`` rows at most; ``len()`` and ``dropped`` are kept in memory
    (read without a query, and still answer after ``close``)."""

    def __init__(self, path: str | Path, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"outbox max_items must be at least 1, not {max_items}")
        self.path = Path(path)
        self.max_items = max_items
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(SCHEMA)
        self._count: int = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        self.dropped: int = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        with self._db:
            self._trim()  # a smaller bound than the last run's applies at once

    def put(self, topic: str, payload: bytes, qos: int) -> int:
        """Append a message; returns its row id. Drops the oldest rows when over the bound."""
        with self._db:
            cursor = self._db.execute("INSERT INTO items (topic, payload, qos) VALUES (?, ?, ?)", (topic, payload, qos))
            self._count += 1
            self._trim()
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _trim(self) -> None:
        """Delete the oldest rows over the bound and count them (inside the caller's transaction)."""
        excess = self._count - self.max_items
        if excess <= 0:
            return
        self._db.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT ?)", (excess,))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
        self._count -= excess
        self.dropped += excess

    def peek(self, n: int) -> list[Item]:
        """The ``n`` oldest rows, oldest first; they stay until acked."""
        rows = self._db.execute("SELECT id, topic, payload, qos FROM items ORDER BY id LIMIT ?", (n,))
        return [Item(row_id, topic, bytes(payload), qos) for row_id, topic, payload, qos in rows]

    def ack(self, row_id: int) -> None:
        """Remove a delivered row (a row already gone, e.g. dropped meanwhile, is fine)."""
        with self._db:
            self._count -= self._db.execute("DELETE FROM items WHERE id = ?", (row_id,)).rowcount

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()
