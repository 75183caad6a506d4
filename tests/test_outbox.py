"""The on-disk outbox: FIFO order, acks, the bound, and what survives a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from netgptd.outbox import Outbox


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
