"""``netgptd run --eve -``: events on stdout, the log on stderr, never mixed.

journald reads both streams; a pipe reading stdout (``| jq``) must get EVE
JSON lines and nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.synth.demo import write_demo_capture

pytestmark = pytest.mark.timeout(120)


def test_eve_on_stdout_is_only_events_and_the_log_goes_to_stderr(tmp_path: Path) -> None:
    capture = write_demo_capture(tmp_path / "demo.pcapng")
    config = tmp_path / "netgptd.toml"
    config.write_text("[plugins.rules]\n")  # no Prometheus listener: nothing but EVE and the rules
    proc = subprocess.run(
        [sys.executable, "-m", "netgptd", "run", "--config", str(config), "--source", f"pcap:{capture}",
         "--eve", "-", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events and all("event_type" in e for e in events), [e for e in events if "event_type" not in e][:3]
    assert {"flow", "stats", "alert"} <= {e["event_type"] for e in events}
    log = [json.loads(line) for line in proc.stderr.splitlines()]  # not a terminal: JSON lines
    assert log and all({"event", "level", "timestamp"} <= entry.keys() for entry in log)
    assert "model_loaded" in {entry["event"] for entry in log}
