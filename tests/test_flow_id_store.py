"""Flow ids stay unique across a restart even after a flood: the reservation in the state directory."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import structlog

from netgptd.capture.file_source import PcapFileSource
from netgptd.config import SensorSettings, Settings
from netgptd.flow_id_store import FILE, FlowIdStore
from netgptd.flow_ids import COUNTER_BITS, RESERVE, first_flow_id, sensor_tag
from netgptd.pipeline import Pipeline
from netgptd.plugin_host import PluginHost
from netgptd.sdnotify import Notifier
from netgptd.synth.demo import write_demo_capture

NOW = 1_800_000_000.0


def test_a_reserved_ceiling_above_the_clock_is_where_the_next_run_starts() -> None:
    clock = first_flow_id("s1", NOW)
    assert first_flow_id("s1", NOW, reserved=clock + 5) == clock + 5
    assert first_flow_id("s1", NOW, reserved=clock - 5) == clock, "the clock has passed it"
    other = (sensor_tag("s2") << COUNTER_BITS) | (clock & ((1 << COUNTER_BITS) - 1))
    assert first_flow_id("s1", NOW, reserved=other + 5) == clock, "another sensor's ceiling means nothing here"


def test_the_ceiling_is_written_ahead_atomically_and_rarely(tmp_path: Path) -> None:
    store = FlowIdStore(tmp_path / "state")
    assert store.load() == 0
    store.reserve(1000)
    path = tmp_path / "state" / FILE
    assert int(path.read_text()) == 1000 + RESERVE == store.load()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    written = path.stat().st_mtime_ns, path.stat().st_ino
    store.reserve(1000 + RESERVE // 2)  # half the reserve still ahead: nothing written
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    store.reserve(1001 + RESERVE // 2)
    assert int(path.read_text()) == 1001 + RESERVE + RESERVE // 2
    assert not list(path.parent.glob(".*.tmp")), "the temporary file was renamed into place"


def test_an_unreadable_or_unwritable_store_costs_only_the_guarantee(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text("garbage\n")
    store = FlowIdStore(tmp_path)
    with structlog.testing.capture_logs() as logs:
        assert store.load() == 0
        blocked = FlowIdStore(tmp_path / FILE)  # its folder is a file: nothing can be written there
        blocked.reserve(10)
        blocked.reserve(10 + RESERVE)
    assert [e["event"] for e in logs] == ["flow_ids_unreadable", "flow_ids_unwritable"], "one line per change"
    assert blocked.reserved == 0


def pipeline(capture: Path, state: Path) -> Pipeline:
    settings = Settings(sensor=SensorSettings(sensor="s1", state_dir=str(state)), plugins={})
    return Pipeline(settings, PcapFileSource(capture), PluginHost({}), None, Notifier.from_env({}),
                    flow_ids=FlowIdStore(state))  # fmt: skip


def test_a_restart_at_once_starts_above_every_id_the_last_run_could_give(tmp_path: Path) -> None:
    """Without the store the second run would start a few clock ticks above the first: below the ids a
    flood of more than 4,000 flows/s gave out meanwhile."""
    capture = write_demo_capture(tmp_path / "demo.pcapng")
    first = pipeline(capture, tmp_path / "state")
    asyncio.run(first.run())
    given = first.first_id + first.ingest.flows.flows_created  # one above the last id the run gave out
    ceiling = FlowIdStore(tmp_path / "state").load()
    assert ceiling >= given + RESERVE // 2
    second = pipeline(capture, tmp_path / "state")  # at once: the clock has moved a few ticks only
    assert first_flow_id("s1", time.time()) < ceiling, "the clock alone would start below the reservation"
    assert second.first_id >= ceiling
