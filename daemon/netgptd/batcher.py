"""Dynamic batching for the model: a bounded queue of flows, due by size or by age.

Pure: time comes in as an argument (monotonic seconds). The pipeline offers
flows as they become ready (buffer full, or ended), takes a batch when one
is due, and reports it done. A flow refused because the queue is full is
the caller's to count as unclassified: nothing is ever queued without limit.
"""

from __future__ import annotations

from collections import deque

from netgptd.flow.table import Flow


class Batcher:
    def __init__(self, max_batch: int = 256, max_wait_s: float = 0.02, capacity: int = 4096) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        self._queue: deque[tuple[float, Flow]] = deque()
        self._pending: set[int] = set()  # flow ids queued or in flight

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, flow: Flow, now: float) -> bool:
        """Queue ``flow`` unless the queue is full (False: the caller counts it unclassified)."""
        if flow.flow_id in self._pending:
            return True
        if len(self._queue) >= self.capacity:
            return False
        self._queue.append((now, flow))
        self._pending.add(flow.flow_id)
        return True

    def pending(self, flow: Flow) -> bool:
        """Whether ``flow`` is queued or being classified."""
        return flow.flow_id in self._pending

    def due_in(self, now: float) -> float | None:
        """Seconds until a batch is due (0: now); None when nothing waits."""
        if not self._queue:
            return None
        if len(self._queue) >= self.max_batch:
            return 0.0
        return max(0.0, self._queue[0][0] + self.max_wait_s - now)

    def take(self) -> list[Flow]:
        """The next batch, oldest first; they stay pending until ``done``."""
        count = min(self.max_batch, len(self._queue))
        return [self._queue.popleft()[1] for _ in range(count)]

    def done(self, flows: list[Flow]) -> None:
        for flow in flows:
            self._pending.discard(flow.flow_id)
