"""EVE ``flow_id`` values unique across restarts and sensors, exact in JSON readers (< 2**53).

An id is ``sensor tag << 43 | counter``: the tag is 10 bits of a hash of
the sensor's name (so two sensors' ids differ unless their tags collide,
1 pair in 1,024), and the counter starts, at each start of the process,
at the wall-clock time in quarter milliseconds since 2025-01-01 UTC and
counts one per flow. A later start therefore begins above every id of an
earlier run unless that run gave out more than 4,000 flow ids per second
of its whole life (its counter would have run past the new start's
clock). 43 bits of quarter milliseconds last until 2094.

That one exception (a flood's restart) is closed by a reservation in the
state directory (:mod:`netgptd.flow_id_store`): the running sensor keeps
the ceiling of the ids it may give out, ``RESERVE`` ahead of the next one,
on disk, and a restart starts above it as well as above the clock.

The flow table numbers flows from :func:`first_flow_id` on, so internal ids
and EVE ids are the same numbers.
"""

from __future__ import annotations

import hashlib

EPOCH_S = 1_735_689_600  # 2025-01-01T00:00:00Z
TICKS_PER_S = 4_000  # counter steps per second of the clock: the sustained flow rate a run may average
COUNTER_BITS = 43
TAG_BITS = 10
MAX_ID = (1 << (TAG_BITS + COUNTER_BITS)) - 1  # 2**53 - 1: JavaScript's largest exact integer
RESERVE = 10_000_000  # ids reserved ahead on disk: more than a sensor gives out between two stats events


def sensor_tag(sensor: str) -> int:
    """The sensor's 10-bit tag: stable across restarts and machines (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(sensor.encode()).digest()[:2], "big") >> (16 - TAG_BITS)


def first_flow_id(sensor: str, now_s: float, reserved: int = 0) -> int:
    """The first flow id of a run of ``sensor`` started at ``now_s`` (seconds since the epoch), at or
    above ``reserved`` (the ceiling an earlier run reserved) when that ceiling is this sensor's."""
    ticks = min(max(0, int((now_s - EPOCH_S) * TICKS_PER_S)), (1 << COUNTER_BITS) - 1)
    clock = (sensor_tag(sensor) << COUNTER_BITS) | ticks
    if reserved >> COUNTER_BITS == sensor_tag(sensor) and clock < reserved <= MAX_ID:
        return reserved
    return clock
