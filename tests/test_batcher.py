"""The batcher: bounded, due by size or age, and a flow is never queued twice."""

from __future__ import annotations

from types import SimpleNamespace

from netgptd.batcher import Batcher


def flow(n: int) -> SimpleNamespace:
    return SimpleNamespace(flow_id=n)


def test_due_by_size_or_by_age() -> None:
    b = Batcher(max_batch=3, max_wait_s=0.5, capacity=10)
    assert b.due_in(0.0) is None
    b.offer(flow(1), now=10.0)
    assert b.due_in(10.1) == 0.4 or abs(b.due_in(10.1) - 0.4) < 1e-9
    assert b.due_in(10.6) == 0.0
    b.offer(flow(2), 10.2), b.offer(flow(3), 10.3)
    assert b.due_in(10.3) == 0.0  # a full batch does not wait
    assert [f.flow_id for f in b.take()] == [1, 2, 3]


def test_bounded_and_pending_until_done() -> None:
    b = Batcher(max_batch=2, max_wait_s=0.0, capacity=3)
    flows = [flow(n) for n in range(5)]
    assert [b.offer(f, 0.0) for f in flows] == [True, True, True, False, False]
    assert b.offer(flows[0], 0.0) is True and len(b) == 3  # already queued: not twice
    batch = b.take()
    assert [f.flow_id for f in batch] == [0, 1] and len(b) == 1
    assert b.pending(flows[0]) and b.pending(flows[2]) and not b.pending(flows[4])
    assert b.offer(flows[0], 0.0) and len(b) == 1  # in flight: not queued again
    b.done(batch)
    assert not b.pending(flows[0])
