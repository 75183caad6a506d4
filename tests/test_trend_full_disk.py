"""The trends plugin on a full disk (a real tmpfs): forecasts go on from memory, one log line per change."""

from __future__ import annotations

from pathlib import Path

import structlog

from small_disk import SmallDisk, small_disk  # noqa: F401 -- the fixture
from test_trend_plugin import T0, feed, settle, started, traffic


def test_full_disk_keeps_forecasting_and_resumes_storing(small_disk: SmallDisk, tmp_path: Path) -> None:
    plugin = started(small_disk.path, horizon=2, top_apps=1, min_history=4)
    with structlog.testing.capture_logs() as logs:
        raised = feed(plugin, traffic(6))
        small_disk.fill()
        raised += feed(plugin, traffic(6, start=T0 + 6 * 60))
        full = plugin.netgpt_status()
        small_disk.free()
        raised += feed(plugin, traffic(4, start=T0 + 12 * 60)) + settle(plugin, T0 + 15 * 60 + 30)
    status = plugin.netgpt_status()
    plugin.netgpt_close()
    assert full["history_unwritten"] > 0
    assert status["history_unwritten"] == full["history_unwritten"]  # storing resumed once space came back
    starts = sorted({e["trend"]["window_start"] for e in raised if e.get("event_type") == "trend"})
    assert len(starts) >= 10, "forecasts every window, the full-disk ones too"
    events = [e["event"] for e in logs]
    assert events.count("trend_history_unwritable") == 1 and events.count("trend_history_writable") == 1
    assert not any(e["log_level"] in ("error", "exception") for e in logs)
