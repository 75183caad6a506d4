"""Bounded sliding windows for the rule detectors (pure: time comes with the flows).

A spoofed-source flood brings a new address with nearly every flow. The
rules keep per-offender windows, so every structure here has a hard bound
whatever the traffic:

- :class:`DistinctWindow` counts the distinct values of one key over the
  last ``span`` seconds in time slices. It remembers values exactly up to
  ``exact_cap`` of them (past it the threshold is already crossed); values
  beyond go into a HyperLogLog sketch of their slice, so the count a
  sustained flood reports stays honest while its memory stays put.
- :class:`WindowTable` holds the windows of one rule by key, at most
  ``max_keys``: a window idle for a whole span leaves, and past the cap the
  least filled of the least recently used goes (counted as an eviction), so
  a real scanner's window outlives the flood's one-flow windows.
- :class:`Cooldowns` remembers until when each offender stays quiet, at most
  ``max_keys`` of them, the soonest to end going first when full.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from typing import Hashable

SLICES = 10  # time slices per window span
SKETCH_BITS = 10  # 2**10 one-byte registers per sketched slice: about 3 % standard error
EVICTION_SAMPLE = 8  # least recently used windows compared when one must go
_SKETCH_SIZE = 1 << SKETCH_BITS
_RANK_BITS = 64 - SKETCH_BITS
_MASK64 = (1 << 64) - 1


def _mix64(value: Hashable) -> int:
    """A well spread 64-bit hash (``hash`` of a small int is the int itself): splitmix64's finalizer."""
    z = hash(value) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sketch_add(registers: bytearray, value: Hashable) -> None:
    """Add a value to HyperLogLog registers."""
    z = _mix64(value)
    rest = z & ((1 << _RANK_BITS) - 1)
    rank = _RANK_BITS - rest.bit_length() + 1
    index = z >> _RANK_BITS
    if registers[index] < rank:
        registers[index] = rank


def sketch_estimate(registers: bytearray) -> float:
    """The distinct count HyperLogLog registers hold (with the small-range correction)."""
    m = len(registers)
    estimate = 0.7213 / (1 + 1.079 / m) * m * m / sum(2.0**-r for r in registers)
    zeros = registers.count(0)
    if estimate <= 2.5 * m and zeros:
        return m * math.log(m / zeros)
    return estimate


@dataclass(frozen=True)
class WindowShape:
    """What every window of one rule shares: its span and how many values it keeps exactly."""

    span: float
    exact_cap: int
    slice_width: float = field(init=False)  # computed once: every flow reads it
    idle_after: float = field(init=False)  # a window with nothing added for this long has expired whole

    def __post_init__(self) -> None:
        object.__setattr__(self, "slice_width", self.span / SLICES)
        object.__setattr__(self, "idle_after", self.span + self.span / SLICES)


class _Slice:
    __slots__ = ("index", "values", "sketch")

    def __init__(self, index: int) -> None:
        self.index = index
        self.values: set[Hashable] = set()
        self.sketch: bytearray | None = None  # values that came past the window's exact cap


class DistinctWindow:
    """Distinct values of one key in the last ``span`` seconds (a slice more at most)."""

    __slots__ = ("shape", "last", "_slices", "_holders", "sketched")

    def __init__(self, shape: WindowShape) -> None:
        self.shape = shape
        self.last = -math.inf  # the latest time added
        self._slices: list[_Slice] = []  # by index, oldest first
        self._holders: dict[Hashable, int] = {}  # value -> slices holding it exactly
        self.sketched = 0  # values added to a sketch rather than exactly

    def add(self, when: float, value: Hashable) -> None:
        """Count ``value`` at ``when`` and forget the slices that ended a span before it."""
        if when > self.last:
            self.last = when
        index = int(when // self.shape.slice_width)
        slices = self._slices
        if slices and slices[-1].index == index:
            self._count(slices[-1], value)
        elif not slices or slices[-1].index < index:
            slices.append(_Slice(index))
            self._count(slices[-1], value)
            self._expire(index - SLICES - 1)  # only a new latest slice moves the window
        else:  # a flow that started before the latest one (flows end, and come here, out of start order)
            self._count(self._earlier_slice(index), value)
            if len(slices) > 2 * SLICES:  # times far apart: the oldest go
                self._expire(slices[0].index)

    def _count(self, part: _Slice, value: Hashable) -> None:
        if value in part.values:
            return
        holders = self._holders
        if value in holders:
            holders[value] += 1
        elif len(holders) < self.shape.exact_cap:
            holders[value] = 1
        else:
            if part.sketch is None:
                part.sketch = bytearray(_SKETCH_SIZE)
            sketch_add(part.sketch, value)
            self.sketched += 1
            return
        part.values.add(value)

    def reached(self, threshold: int) -> bool:
        """At least ``threshold`` distinct values (exact while ``threshold <= exact_cap``)."""
        return len(self._holders) >= threshold

    def distinct(self) -> int:
        """The distinct count: exact until a slice was sketched, a HyperLogLog estimate after."""
        exact = len(self._holders)
        sketches = [part.sketch for part in self._slices if part.sketch is not None]
        if not sketches:
            return exact
        union = bytearray(_SKETCH_SIZE)
        for sketch in sketches:
            for i, rank in enumerate(sketch):
                if rank > union[i]:
                    union[i] = rank
        for value in self._holders:
            sketch_add(union, value)
        return max(exact, round(sketch_estimate(union)))

    def idle_at(self, when: float) -> bool:
        """Nothing added within a span (and a slice) before ``when``: every slice has expired."""
        return self.last < when - self.shape.idle_after

    @property
    def size(self) -> int:
        """Values held exactly (what eviction compares)."""
        return len(self._holders)

    def _earlier_slice(self, index: int) -> _Slice:
        """The slice ``index``, before the latest one (made if missing)."""
        slices = self._slices
        for position in range(len(slices) - 1, -1, -1):
            if slices[position].index == index:
                return slices[position]
            if slices[position].index < index:
                slices.insert(position + 1, _Slice(index))
                return slices[position + 1]
        slices.insert(0, _Slice(index))
        return slices[0]

    def _expire(self, through: int) -> None:
        """Drop the slices up to index ``through``."""
        slices = self._slices
        while slices and slices[0].index <= through:
            for value in slices.pop(0).values:
                left = self._holders[value] - 1
                if left:
                    self._holders[value] = left
                else:
                    del self._holders[value]


class WindowTable:
    """The windows of one rule by key: at most ``max_keys``, idle ones leaving, evictions counted."""

    def __init__(self, shape: WindowShape, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.shape, self.max_keys = shape, max_keys
        self._windows: OrderedDict[Hashable, DistinctWindow] = OrderedDict()  # least recently used first
        self.evicted = 0  # windows dropped for room while still within their span
        self.sketched = 0  # values of windows gone that had gone to a sketch

    def window(self, key: Hashable, when: float) -> DistinctWindow:
        """The key's window (a new one if none), now the most recently used."""
        window = self._windows.get(key)
        if window is not None:
            self._windows.move_to_end(key)
            return window
        self._drop_idle(when)
        if len(self._windows) >= self.max_keys:
            self._evict()
        window = self._windows[key] = DistinctWindow(self.shape)
        return window

    def __len__(self) -> int:
        return len(self._windows)

    def sketched_total(self) -> int:
        """Values counted by a sketch rather than exactly, windows gone included."""
        return self.sketched + sum(w.sketched for w in self._windows.values() if w.sketched)

    def _drop_idle(self, when: float, at_most: int = 2) -> None:
        """Drop idle windows from the least recently used end (a few per new key: amortised)."""
        for _ in range(at_most):
            if not self._windows:
                return
            key, window = next(iter(self._windows.items()))
            if not window.idle_at(when):
                return
            self._forget(key)

    def _evict(self) -> None:
        """Drop the least filled of the least recently used windows (the least recent one if it holds one value:
        a flood's usual case, and no window holds fewer)."""
        victim, least = None, math.inf
        for key, window in islice(self._windows.items(), EVICTION_SAMPLE):
            if window.size < least:
                victim, least = key, window.size
                if least <= 1:
                    break
        self._forget(victim)
        self.evicted += 1

    def _forget(self, key: Hashable) -> None:
        self.sketched += self._windows.pop(key).sketched


class Cooldowns:
    """Until when each key stays quiet, for at most ``max_keys`` keys (the soonest to end go first)."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.max_keys = max_keys
        self._until: OrderedDict[Hashable, float] = OrderedDict()  # in the order they were started
        self.evicted = 0  # cool-downs forgotten for room before they ended

    def quiet(self, key: Hashable, when: float) -> bool:
        return when < self._until.get(key, -math.inf)

    def start(self, key: Hashable, until: float, now: float) -> None:
        self._until.pop(key, None)
        while self._until:  # ended ones leave from the front (started earliest, so ending earliest)
            first = next(iter(self._until.values()))
            if first > now:
                break
            self._until.popitem(last=False)
        if len(self._until) >= self.max_keys:
            self._until.popitem(last=False)
            self.evicted += 1
        self._until[key] = until

    def __len__(self) -> int:
        return len(self._until)
