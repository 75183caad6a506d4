"""A full disk under the running outputs: the state folder and eve.json on a real 4 MiB tmpfs, a real Mosquitto.

The eve and mqtt plugins run in process through a ``PluginHost``, as the
pipeline drives them; the disk is filled, the broker stopped and started,
the disk freed. Alerts must keep reaching the broker, nothing may be
counted that is not so, EVE must hold whole lines only, and the log must
say each change once, without a traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from broker import Mosquitto, Received, Subscriber, mosquitto, until  # noqa: F401 -- the fixture
from small_disk import SmallDisk, small_disk  # noqa: F401 -- the fixture

from netgptd import logs
from netgptd.plugin_host import PluginHost, SensorContext
from netgptd_plugins.mqtt import OUTBOX_NAME, OUTBOX_RETRY

pytestmark = pytest.mark.timeout(60)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "close_timeout": 2.0}
ALERTS = "netgpt/lab/full/alerts"


def alert(n: int) -> dict[str, Any]:
    return {"timestamp": "2024-05-01T12:00:00.000000+0000", "event_type": "alert", "n": n, "pad": "x" * 1500}


def numbers(messages: list[Received]) -> list[int]:
    return [json.loads(m.payload)["n"] for m in messages if m.topic == ALERTS]


def rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def test_alerts_keep_flowing_on_a_full_disk_and_the_outbox_resumes(small_disk: SmallDisk, mosquitto: Mosquitto) -> None:
    state, eve = small_disk.path / "state", small_disk.path / "eve.json"
    outbox = state / OUTBOX_NAME
    stream = io.StringIO()
    logs.configure(stream, level="info")

    async def run(subscriber: Subscriber) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        host = PluginHost({"eve": {"path": str(eve), "flush_delay": 0.05}, "mqtt": {"url": mosquitto.url, **FAST}})
        await host.start(SensorContext(site="lab", sensor="full", state_dir=state))
        mqtt = lambda: host.status()["mqtt"]  # noqa: E731

        def got(count: int) -> Any:
            return asyncio.to_thread(subscriber.wait_for, lambda m: set(numbers(m)) >= set(range(count)), 15)

        for n in range(10):  # A: all is well
            host.emit(alert(n))
        await got(10)

        await asyncio.to_thread(mosquitto.stop)  # B: the broker goes away, alerts wait in the outbox
        await until(lambda: mqtt()["connected"] == 0, what="disconnect noticed")
        for n in range(10, 20):
            host.emit(alert(n))
        await asyncio.sleep(0.1)

        small_disk.fill()  # C: the disk fills, the broker comes back
        await asyncio.to_thread(mosquitto.start)
        for n in range(20, 120):
            host.emit(alert(n))
        await got(120)
        await until(lambda: mqtt()["held"] == 0, what="memory emptied")
        await asyncio.sleep(0.5)  # nothing more is sent: the delivered rows are not sent again
        seen["copies"] = Counter(numbers(subscriber.messages))
        seen["full"] = dict(mqtt())
        seen["rows_full"] = rows_in_file(outbox)
        seen["eve_full"] = host.status()["eve"]
        seen["healthy_full"] = host.dead()

        await asyncio.to_thread(mosquitto.stop)  # D: broker away and disk full: memory holds them
        await until(lambda: mqtt()["connected"] == 0, what="disconnect noticed")
        for n in range(120, 150):
            host.emit(alert(n))
        seen["held"] = mqtt()["held"]

        small_disk.free()  # E: space again: the next alert after the retry delay takes memory to the outbox
        await asyncio.sleep(OUTBOX_RETRY + 0.1)
        host.emit(alert(150))
        seen["freed"] = dict(mqtt())
        seen["rows_freed"] = rows_in_file(outbox)

        await asyncio.to_thread(mosquitto.start)  # F: all goes out
        await got(151)
        await until(lambda: mqtt()["outbox_depth"] == 0, what="outbox drained")
        seen["rows_end"] = rows_in_file(outbox)
        await host.aclose()
        seen["end"] = dict(mqtt())
        seen["eve_end"] = host.status()["eve"]
        seen["errors"] = dict(host.errors)
        return seen

    with Subscriber(mosquitto, ALERTS, client_id="watch-full-disk") as subscriber:
        seen = asyncio.run(run(subscriber))
        delivered = numbers(subscriber.messages)

    full = seen["full"]
    assert (full["outbox_writable"], full["outbox_unwritten"], full["held"]) == (0, 100, 0)
    assert full["outbox_depth"] == seen["rows_full"] == 10, "delivered rows whose delete failed stay, and count"
    assert max(seen["copies"].values()) <= 2, f"re-sent in a loop: {seen['copies'].most_common(3)}"
    assert seen["eve_full"]["disk_full"] == 1 and seen["eve_full"]["lost"] > 0
    assert seen["healthy_full"] == {}, "a full disk is degraded, not dead"
    assert seen["held"] == 30
    freed = seen["freed"]
    assert (freed["outbox_writable"], freed["held"]) == (1, 0)
    assert freed["outbox_depth"] == seen["rows_freed"] == 31, "memory went to the outbox, the delivered rows left it"
    assert seen["rows_end"] == seen["end"]["outbox_depth"] == 0
    assert list(dict.fromkeys(delivered)) == list(range(151)), "none missing, in order"
    assert seen["errors"] == {}

    lines = eve.read_bytes().decode()
    assert lines.endswith("\n")
    in_eve = [json.loads(line)["n"] for line in lines.splitlines()]
    assert in_eve == sorted(in_eve) and set(range(20)) <= set(in_eve) and 150 in in_eve
    assert seen["eve_end"]["written"] == len(in_eve) and seen["eve_end"]["written"] + seen["eve_end"]["lost"] == 151

    events = Counter(json.loads(line)["event"] for line in stream.getvalue().splitlines())
    for change in ("mqtt_outbox_unwritable", "mqtt_outbox_writable", "eve_disk_full", "eve_write_resumed"):
        assert events[change] == 1, (change, events)
    assert "plugin_failed" not in events and "Traceback" not in stream.getvalue()


def test_a_disk_full_before_the_start_holds_alerts_in_memory_until_the_outbox_can_be_made(
    small_disk: SmallDisk, mosquitto: Mosquitto
) -> None:
    state = small_disk.path / "state"
    stream = io.StringIO()
    logs.configure(stream, level="info")

    async def run(subscriber: Subscriber) -> tuple[dict[str, Any], dict[str, Any]]:
        host = PluginHost({"mqtt": {"url": mosquitto.url, **FAST}})
        small_disk.fill()
        await host.start(SensorContext(site="lab", sensor="full", state_dir=state))
        for n in range(5):
            host.emit(alert(n))
        await asyncio.to_thread(subscriber.wait_for, lambda m: set(numbers(m)) == set(range(5)), 10)
        at_start = dict(host.status()["mqtt"])
        small_disk.free()
        await asyncio.sleep(OUTBOX_RETRY + 0.1)
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: host.status()["mqtt"]["connected"] == 0, what="disconnect noticed")
        host.emit(alert(5))
        freed = dict(host.status()["mqtt"])
        await host.aclose()
        return at_start, freed

    with Subscriber(mosquitto, ALERTS) as subscriber:
        at_start, freed = asyncio.run(run(subscriber))
    assert (at_start["outbox_writable"], at_start["outbox_depth"], at_start["outbox_unwritten"]) == (0, 0, 5)
    assert (freed["outbox_writable"], freed["outbox_depth"], freed["held"]) == (1, 1, 0)
    assert rows_in_file(state / OUTBOX_NAME) == 1
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events.count("mqtt_outbox_unwritable") == events.count("mqtt_outbox_writable") == 1
    assert "plugin_failed" not in events
