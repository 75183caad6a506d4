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

A write that fails (a full disk: SQLite cannot even delete a row then, as
the delete goes through the WAL) raises :class:`OutboxError` and changes
nothing: ``len()`` stays the number of rows in the file. A row acked while
its delete cannot be written is remembered as delivered: ``peek`` skips it,
and it is deleted with the next write that succeeds.

Not thread-safe: one owner (the pipeline's asyncio loop) uses it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, NamedTuple

from netgptd.files import create_file, describe

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


class OutboxError(Exception):
    """The outbox could not be opened or written (the message says why, e.g. 'database or disk is full')."""


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
        self._delivered: set[int] = set()  # acked, but the delete could not be written yet
        try:
            self._db = sqlite3.connect(create_file(self.path))
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: {describe(exc) if isinstance(exc, OSError) else exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(SCHEMA)
            self._count: int = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            self.dropped: int = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
            self._write([])  # a smaller bound than the last run's applies at once
        except (sqlite3.Error, OutboxError) as exc:
            self._db.close()
            raise OutboxError(f"{self.path}: {exc}") from None

    def put(self, topic: str, payload: bytes, qos: int) -> int:
        """Append a message; returns its row id. Drops the oldest rows when over the bound."""
        return self.extend([(topic, payload, qos)])

    def extend(self, messages: Iterable[tuple[str, bytes, int]]) -> int:
        """Append messages in order, in one transaction; the last one's row id (0 for none)."""
        return self._write(list(messages))

    def _write(self, messages: list[tuple[str, bytes, int]]) -> int:
        """One transaction: the pending deletes, the new rows, the trim. In-memory counts change only once committed."""
        last = 0
        try:
            with self._db:
                deleted = self._delete_delivered()
                for message in messages:
                    cursor = self._db.execute("INSERT INTO items (topic, payload, qos) VALUES (?, ?, ?)", message)
                    assert cursor.lastrowid is not None
                    last = cursor.lastrowid
                excess = max(0, self._count - deleted + len(messages) - self.max_items)
                if excess:
                    self._db.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT ?)",
                                     (excess,))  # fmt: skip
                    self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
        except sqlite3.Error as exc:
            raise OutboxError(str(exc)) from None
        self._delivered.clear()
        self._count += len(messages) - deleted - excess
        self.dropped += excess
        return last

    def _delete_delivered(self) -> int:
        if not self._delivered:
            return 0
        return self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in self._delivered]).rowcount

    def peek(self, n: int) -> list[Item]:
        """The ``n`` oldest rows not yet delivered, oldest first; they stay until acked."""
        try:
            rows = self._db.execute("SELECT id, topic, payload, qos FROM items ORDER BY id LIMIT ?",
                                    (n + len(self._delivered),)).fetchall()  # fmt: skip
        except sqlite3.Error as exc:
            raise OutboxError(str(exc)) from None
        items = [Item(row_id, topic, bytes(payload), qos) for row_id, topic, payload, qos in rows]
        return [item for item in items if item.row_id not in self._delivered][:n]

    def ack(self, row_id: int) -> None:
        """Remove a delivered row (a row already gone, e.g. dropped meanwhile, is fine).

        OutboxError when the delete cannot be written: the row is then
        remembered as delivered (never peeked again) and deleted later.
        """
        self._delivered.add(row_id)
        self._write([])

    @property
    def undelivered(self) -> int:
        """Rows still to be sent (``len()`` less those delivered whose delete is pending)."""
        return self._count - len(self._delivered)

    def __len__(self) -> int:
        """Rows in the file."""
        return self._count

    def close(self) -> None:
        self._db.close()
