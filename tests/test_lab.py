"""The traffic lab: each scenario for a few seconds, checked against its capture."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.capture.file_source import PcapFileSource
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.lab import runner
from netgptd.lab.safety import LabError, assert_loopback
from netgptd.replay import replay

SCENARIO_SECONDS = 2.0

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dumpcap") is None, reason="the lab captures lo with dumpcap: needs root"
)


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "8.8.8.8", "::ffff:10.0.0.1", "2001:db8::1", "localhost"])
def test_non_loopback_addresses_are_refused(address: str) -> None:
    with pytest.raises(LabError):
        assert_loopback([address])


def test_loopback_addresses_pass() -> None:
    assert_loopback(["127.0.0.1", "127.77.3.10", "::1"])


def test_lab_list_names_every_scenario_with_its_kind() -> None:
    out = subprocess.run([sys.executable, "-m", "netgptd", "lab", "list"], capture_output=True, text=True, check=True).stdout
    for name, s in runner.scenarios().items():
        assert any(line.split()[:2] == [name, s.kind] for line in out.splitlines()), name


def test_unknown_scenario_and_bad_duration_are_one_line_errors(tmp_path: Path) -> None:
    for args in (["no-such-scenario"], ["http1", "--duration", "0"], ["http1", "--duration", "10000"]):
        proc = subprocess.run([sys.executable, "-m", "netgptd", "lab", "run", *args, "--out", str(tmp_path)],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_without_root_the_lab_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake, and the only one here: a real unprivileged run cannot be made on
    # this machine, whose Python lives under /root where other users cannot
    # reach it. So the effective user id is faked, and nothing else.
    monkeypatch.setattr(runner.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        runner.run_lab(["http1"], tmp_path, 1.0)
    assert not (tmp_path / "http1.pcapng").exists()


def _capture_addresses(path: Path) -> set[str]:
    addresses = set()
    for record in PcapFileSource(path).packets():
        try:
            packet = decode(record)
        except (DecodeError, NotIP):
            continue
        addresses.add(str(ipaddress.ip_address(packet.src)))
        addresses.add(str(ipaddress.ip_address(packet.dst)))
    return addresses


@needs_root
@pytest.mark.root
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(runner.scenarios()))
def test_scenario_capture_holds_every_labelled_flow(name: str, tmp_path: Path) -> None:
    (result,) = runner.run_lab([name], tmp_path, SCENARIO_SECONDS)
    labels = [__import__("json").loads(line) for line in result.labels.read_text().splitlines()]
    assert labels, f"{name} labelled no flow"
    events: list[dict] = []
    outcome = replay([result.capture], events.append)
    assert not outcome.failed_files and not outcome.truncated_files
    stats = events[-1]["netgpt"]["stats"]
    assert stats["packets"] > 0 and not stats["decode_errors"], stats
    flows = {e["community_id"]: e for e in events if e["event_type"] == "flow"}
    missing = [label for label in labels if label["community_id"] not in flows]
    assert not missing, f"{len(missing)} of {len(labels)} labelled flows not in the capture, e.g. {missing[0]}"
    for label in labels:
        flow = flows[label["community_id"]]
        assert {(flow["src_ip"], flow["src_port"]), (flow["dest_ip"], flow["dest_port"])} == {
            (label["src_ip"], label["src_port"]), (label["dest_ip"], label["dest_port"])}  # fmt: skip
    leaving = {a for a in _capture_addresses(result.capture) if not ipaddress.ip_address(a).is_loopback}
    assert not leaving, f"{name}: capture holds non-loopback addresses {sorted(leaving)}"
