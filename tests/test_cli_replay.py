"""``netgptd replay`` as a user runs it: a subprocess, its exit status, stdout and stderr."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

# Small classic pcaps with a handful of flows; the first one present is used.
PREFERRED = ["ndpi/pcap/teredo.pcap", "ndpi/pcap/pptp.pcap", "ndpi/pcap/dns_fragmented.pcap", "ndpi/pcap/smb_frags.pcap"]
MIN_RECORDS = 10


def netgptd(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netgptd", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=90)  # fmt: skip


def pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each whole record of a little-endian classic pcap, header included."""
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "expected a little-endian classic pcap"
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        if off + 16 + incl > len(data):
            break
        out.append((off, 16 + incl))
        off += 16 + incl
    return out


@pytest.fixture(scope="module")
def capture(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a small real capture (classic pcap, little-endian) in a temporary folder."""
    candidates = [corpus / name for name in PREFERRED]
    candidates += sorted((corpus / "ndpi" / "pcap").glob("*.pcap"), key=lambda p: p.stat().st_size)
    for path in candidates:
        if path.is_file() and path.stat().st_size <= 256 * 1024:
            data = path.read_bytes()
            if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") and len(pcap_records(data)) >= MIN_RECORDS:
                copy = tmp_path_factory.mktemp("cli") / path.name
                shutil.copyfile(path, copy)
                return copy
    pytest.skip("no small little-endian classic pcap in the corpus")


def without_flow_id(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "flow_id"}


def eve_lines(text: str) -> list[dict]:
    events = [json.loads(line) for line in text.splitlines()]  # every line must be JSON
    assert events, "no EVE output"
    return events


def summary_number(stdout: str, label: str) -> int:
    m = re.search(rf"^{label}\s+([\d,]+)\s*$", stdout, re.MULTILINE)
    assert m, f"no {label!r} line in the summary:\n{stdout}"
    return int(m[1].replace(",", ""))


def assert_no_complaints(stderr: str) -> None:
    """stderr may carry structured log lines, but no warning, error or traceback."""
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"unexpected stderr line: {line}") from None
        assert entry.get("level") not in ("warning", "error", "critical"), line


def assert_one_error_line(proc: subprocess.CompletedProcess[str], names: str) -> None:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert names in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


# -- files that cannot be read ---------------------------------------------------------


def test_text_file_is_an_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a capture\n" * 20)
    proc = netgptd("replay", notes)
    assert proc.returncode == 2, proc
    assert_one_error_line(proc, str(notes))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-capture.pcap"
    proc = netgptd("replay", missing, "-q")
    assert proc.returncode == 2, proc
    assert_one_error_line(proc, str(missing))


def test_unwritable_eve_path_is_an_error(capture: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "eve.json"
    proc = netgptd("replay", capture, "--eve", target)
    assert proc.returncode == 2, proc
    assert_one_error_line(proc, str(target))


def test_good_file_still_replayed_next_to_a_bad_one(capture: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    eve = tmp_path / "eve.json"
    proc = netgptd("replay", capture, notes, "--eve", eve, "-q")
    assert proc.returncode == 2, proc
    assert_one_error_line(proc, str(notes))
    events = eve_lines(eve.read_text())
    stats = events[-1]["netgpt"]["stats"]
    assert stats["packets"] == len(pcap_records(capture.read_bytes()))
    assert any(e["event_type"] == "flow" for e in events)


# -- a capture cut short ---------------------------------------------------------------


def test_truncated_capture_warns_and_keeps_its_flows(capture: Path, tmp_path: Path) -> None:
    data = capture.read_bytes()
    records = pcap_records(data)
    keep = len(records) // 2
    off, length = records[keep]
    cut = tmp_path / f"cut-{capture.name}"
    cut.write_bytes(data[: off + length // 2])  # inside record number keep (0-based)
    eve = tmp_path / "eve.json"
    proc = netgptd("replay", cut, "--eve", eve)
    assert proc.returncode == 0, proc
    assert str(cut) in proc.stderr and "truncated" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    events = eve_lines(eve.read_text())
    assert events[-1]["event_type"] == "stats"
    assert events[-1]["netgpt"]["stats"]["packets"] == keep
    assert [e for e in events if e["event_type"] == "flow"], "the records before the cut make no flow"
    assert summary_number(proc.stdout, "packets") == keep


# -- EVE output --------------------------------------------------------------------------


def test_eve_to_stdout(capture: Path) -> None:
    proc = netgptd("replay", capture, "--eve", "-")
    assert proc.returncode == 0, proc
    assert_no_complaints(proc.stderr)  # no progress bar, no warning for a clean capture
    events = eve_lines(proc.stdout)  # nothing but JSON lines: no summary mixed in
    assert events[-1]["event_type"] == "stats"
    assert sum(e["event_type"] == "stats" for e in events) == 1
    stats = events[-1]["netgpt"]["stats"]
    for key in ("packets", "bytes", "decode_errors", "flows", "evictions"):
        assert key in stats, f"stats lacks {key}: {stats}"
    records = pcap_records(capture.read_bytes())
    assert stats["packets"] == len(records)
    assert stats["bytes"] == sum(struct.unpack_from("<I", capture.read_bytes(), off + 12)[0] for off, _ in records)
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == stats["flows"] + stats["evictions"]["active_timeout"] > 0
    assert sum(stats["evictions"].values()) == len(flows)
    for flow in flows:
        assert {"src_ip", "dest_ip", "proto", "community_id", "flow"} <= flow.keys()


def test_eve_to_file_and_summary(capture: Path, tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    proc = netgptd("replay", capture, "--eve", eve)
    assert proc.returncode == 0, proc
    events = eve_lines(eve.read_text())
    stats = events[-1]["netgpt"]["stats"]
    assert events[-1]["event_type"] == "stats"
    # the same events as on stdout, but for the flow ids: each run numbers its flows afresh (netgptd.flow_ids)
    again = eve_lines(netgptd("replay", capture, "--eve", "-").stdout)
    assert [without_flow_id(e) for e in events] == [without_flow_id(e) for e in again]
    assert not {e.get("flow_id") for e in events} & {e.get("flow_id") for e in again} - {None}
    # a summary for people on stdout, agreeing with the stats
    assert not proc.stdout.lstrip().startswith("{"), proc.stdout
    assert summary_number(proc.stdout, "packets") == stats["packets"]
    assert summary_number(proc.stdout, "flows") == stats["flows"]
    assert summary_number(proc.stdout, "bytes") == stats["bytes"]
    assert "flows by protocol:" in proc.stdout


def test_eve_file_is_replaced_not_appended(capture: Path, tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    eve.write_text('{"stale": true}\n')
    assert netgptd("replay", capture, "--eve", eve, "-q").returncode == 0
    events = eve_lines(eve.read_text())
    assert "stale" not in events[0] and events[-1]["event_type"] == "stats"


def test_quiet_prints_nothing(capture: Path, tmp_path: Path) -> None:
    proc = netgptd("replay", capture, "--eve", tmp_path / "eve.json", "-q")
    assert proc.returncode == 0, proc
    assert proc.stdout == ""
    assert_no_complaints(proc.stderr)


# -- on a terminal -----------------------------------------------------------------------


def on_a_terminal(*args: str | Path) -> tuple[int, str]:
    """Run ``netgptd ARGS`` with stderr on a pseudo-terminal, as a person sees it: (status, stderr)."""
    import fcntl
    import os
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "netgptd", *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=90), b"".join(chunks).decode()


def test_on_a_terminal_warnings_read_as_text_and_progress_ends_at_100(tmp_path: Path) -> None:
    """A truncated pcapng: the warning is a readable line, not JSON, and the bar reaches 100 %.

    pcapng blocks are larger than the record plus 16 bytes that the bar counts,
    so before the bar was moved to each file's end it stopped at 93-94 %.
    """
    from netgptd.synth.demo import write_demo_capture

    data = write_demo_capture(tmp_path / "demo.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])  # inside a block
    status, stderr = on_a_terminal("replay", cut, "--eve", tmp_path / "eve.json", "--no-model")
    assert status == 0, stderr
    screen = re.split(r"[\r\n]+", stderr)  # what the terminal shows, one piece per (re)drawn line
    warning = [line for line in screen if "capture_truncated" in line]
    assert len(warning) == 1, stderr
    assert not warning[0].startswith("{") and not warning[0].startswith("replay"), warning[0]
    assert "warning" in warning[0] and str(cut) in warning[0], warning[0]
    last_bar = stderr.replace("\r\n", "\n").split("\r")[-1]
    assert "100%" in last_bar, repr(stderr[-400:])
