"""The demo's and replay's summary: every flow accounted for, in the model's own labels."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle
from netgptd.synth.demo import write_demo_capture

pytestmark = pytest.mark.timeout(120)


def netgptd(*args: str | Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "netgptd", *map(str, args)], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def number(text: str, pattern: str) -> int:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no {pattern!r} in:\n{text}"
    return int(match[1].replace(",", ""))


def indented(text: str, header: str) -> list[tuple[str, int]]:
    """The ``  name  count`` lines under the line that starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1
    rows = []
    for line in lines[start:]:
        match = re.fullmatch(r"  (\S+)\s+([\d,]+)", line)
        if not match:
            break
        rows.append((match[1], int(match[2].replace(",", ""))))
    return rows


def test_demo_summary_accounts_for_every_flow_in_the_models_labels() -> None:
    out = netgptd("demo")
    flows = number(out, r"^flows\s+([\d,]+)$")
    classified = number(out, r"^NetGPT verdicts:\s+([\d,]+) of")
    assert number(out, r"^NetGPT verdicts:\s+[\d,]+ of ([\d,]+) flows") == flows
    no_payload = number(out, r"^  no verdict\s+([\d,]+)\s+no payload")
    assert classified + no_payload == flows
    assert no_payload >= 1000, "the port sweep's lone SYNs carry no payload"
    apps = indented(out, "applications (NetGPT's labels")
    assert sum(n for _, n in apps) == classified  # fewer than 10 classes here: all of them
    labels = set(load_bundle(DEFAULT_BUNDLE).manifest["apps"])
    assert {app for app, _ in apps} <= labels, "spelled as the model spells its classes"
    assert "TLS" in dict(apps)
    assert not re.search(r"^\s+(tcp|udp)/\d+\s", out, re.MULTILINE), "no flows without a verdict among the apps"


def test_without_a_model_ports_are_listed_but_not_a_sweeps_probes(tmp_path: Path) -> None:
    out = netgptd("replay", write_demo_capture(tmp_path / "demo.pcapng"), "--no-model")
    assert "NetGPT verdicts:   none (no model)" in out
    ports = dict(indented(out, "server ports (proto/port)"))
    assert ports["udp/53"] == 200 and min(ports.values()) > 1
    assert number(out, r"^  and ([\d,]+) ports with one flow each$") == 1022
