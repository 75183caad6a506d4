"""The on-disk outbox: FIFO order, acks, the bound, what survives a restart, a full disk, modes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from small_disk import SmallDisk, small_disk  # noqa: F401 -- the fixture

from netgptd.outbox import Outbox, OutboxError


def fill(outbox: Outbox, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        outbox.put(f"t/{n}", f"payload {n}".encode(), 1)


def topics(outbox: Outbox) -> list[str]:
    return [item.topic for item in outbox.peek(1000)]


def test_peek_is_oldest_first_and_ack_removes_one_row(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 100)
    fill(outbox, 4)
    first_two = outbox.peek(2)
    assert [(i.topic, i.payload, i.qos) for i in first_two] == [("t/0", b"payload 0", 1), ("t/1", b"payload 1", 1)]
    assert len(outbox) == 4, "peek removes nothing"
    outbox.ack(first_two[1].row_id)
    assert topics(outbox) == ["t/0", "t/2", "t/3"]
    assert len(outbox) == 3
    outbox.ack(first_two[1].row_id)  # acked twice (a row dropped meanwhile): nothing else goes
    assert len(outbox) == 3
    outbox.close()


def test_row_ids_are_never_reused(tmp_path: Path) -> None:
    """An ack for an old id must not remove a newer row that took its number."""
    outbox = Outbox(tmp_path / "o.sqlite3", 100)
    old = outbox.put("a", b"", 1)
    outbox.ack(old)
    new = outbox.put("b", b"", 1)
    assert new > old
    outbox.ack(old)
    assert topics(outbox) == ["b"]
    outbox.close()


def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 5)
    fill(outbox, 8)
    assert len(outbox) == 5
    assert outbox.dropped == 3
    assert topics(outbox) == ["t/3", "t/4", "t/5", "t/6", "t/7"]
    outbox.close()


def test_rows_and_dropped_count_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "o.sqlite3"  # the folder is made
    outbox = Outbox(path, 5)
    fill(outbox, 8)
    outbox.ack(outbox.peek(1)[0].row_id)
    outbox.close()

    again = Outbox(path, 5)
    assert len(again) == 4
    assert again.dropped == 3
    assert topics(again) == ["t/4", "t/5", "t/6", "t/7"]
    fill(again, 2, start=8)  # one over the bound
    assert again.dropped == 4
    assert topics(again) == ["t/5", "t/6", "t/7", "t/8", "t/9"]
    again.close()


def test_every_put_is_committed_without_close(tmp_path: Path) -> None:
    """A killed process never closes: what it put must already be in the file."""
    path = tmp_path / "o.sqlite3"
    crashed = Outbox(path, 10)
    fill(crashed, 3)
    survivor = Outbox(path, 10)
    assert topics(survivor) == ["t/0", "t/1", "t/2"]
    survivor.close()
    crashed.close()


def test_a_smaller_bound_applies_when_reopened(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, 10)
    fill(outbox, 6)
    outbox.close()
    smaller = Outbox(path, 4)
    assert topics(smaller) == ["t/2", "t/3", "t/4", "t/5"]
    assert smaller.dropped == 2
    smaller.close()


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path, 1).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_len_and_dropped_still_answer_after_close(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 2)
    fill(outbox, 3)
    outbox.close()
    assert (len(outbox), outbox.dropped) == (2, 1)


def test_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_items"):
        Outbox(tmp_path / "o.sqlite3", 0)


def rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def test_a_full_disk_fails_writes_without_miscounting_and_they_resume(small_disk: SmallDisk) -> None:
    path = small_disk.path / "state" / "o.sqlite3"
    outbox = Outbox(path, 1000)
    fill(outbox, 20)
    delivered = outbox.peek(3)
    small_disk.fill()
    with pytest.raises(OutboxError, match="database or disk is full"):
        fill(outbox, 1, start=20)
    assert len(outbox) == rows_in_file(path) == 20, "a failed put counts nothing"
    for item in delivered:  # the broker acknowledged them, but the deletes cannot be written
        with pytest.raises(OutboxError):
            outbox.ack(item.row_id)
    assert len(outbox) == rows_in_file(path) == 20
    assert outbox.undelivered == 17
    assert [i.topic for i in outbox.peek(2)] == ["t/3", "t/4"], "delivered rows are not sent again"

    small_disk.free()
    fill(outbox, 1, start=20)  # the first write that succeeds deletes the delivered rows too
    assert len(outbox) == rows_in_file(path) == outbox.undelivered == 18
    assert topics(outbox)[0] == "t/3" and topics(outbox)[-1] == "t/20"
    outbox.close()


def test_files_are_0640_in_folders_made_0750(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        outbox = Outbox(tmp_path / "state" / "deeper" / "o.sqlite3", 10)
        fill(outbox, 1)
    finally:
        os.umask(old_umask)
    for folder in (tmp_path / "state", tmp_path / "state" / "deeper"):
        assert folder.stat().st_mode & 0o777 == 0o750, folder
    made = sorted((tmp_path / "state" / "deeper").iterdir())  # SQLite gives its WAL files the database's mode
    assert [p.name for p in made] == ["o.sqlite3", "o.sqlite3-shm", "o.sqlite3-wal"]
    assert {p.stat().st_mode & 0o777 for p in made} == {0o640}
    outbox.close()


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "o.sqlite3").symlink_to(target)
    with pytest.raises(OutboxError, match="o.sqlite3: is a symbolic link"):
        Outbox(tmp_path / "o.sqlite3", 10)
    assert target.read_text() == "keep"
