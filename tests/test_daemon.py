"""``netgptd run`` end to end, as a process, with real parts: mosquitto, captures, signals, sd_notify.

Each test starts the daemon the way systemd would (a subprocess, signals,
a NOTIFY_SOCKET made here) on a real capture from the corpus, replayed at
a speed that keeps it running for a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pytest

from broker import Mosquitto, Subscriber, free_port, mosquitto  # noqa: F401 -- the fixture
from netgptd.model.bundle import DEFAULT_BUNDLE, sha256_file
from netgptd.synth.demo import write_demo_capture

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
MINING = "mining/cgminer.g0.pcapng"  # 18 s, 7,163 packets, 1,325 flows, model alerts (mining) all along


class Daemon:
    """``python -m netgptd run ...`` in the background; its stdout is the JSON log."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None, wrap: Sequence[str] = ()) -> None:
        """``wrap``: the command that runs it (``ip netns exec NS``), if any."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.eve = tmp / "eve.json"
        self.log = tmp / "daemon.log"
        self.state = tmp / "state"
        command = [*wrap, sys.executable, "-m", "netgptd", "run", "--state-dir", str(self.state), *args]
        if "--eve" not in args:
            command += ["--eve", str(self.eve)]
        self._log = open(self.log, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=os.environ | (env or {}))  # fmt: skip

    def wait_for_log(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.entries():
                if entry.get("event") == event:
                    return entry
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in the log:\n{self.log.read_text()}")

    def entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append({"text": line})
        return entries

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def terminate(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            self._log.close()
        assert "Traceback" not in self.log.read_text(), self.log.read_text()
        return code

    def events(self, event_type: str) -> list[dict[str, Any]]:
        lines = self.eve.read_text().splitlines() if self.eve.exists() else []
        return [e for e in map(json.loads, lines) if e["event_type"] == event_type]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def mining(corpus: Path) -> Path:
    return corpus / MINING


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


def every_alert_in(alerts: list[dict[str, Any]], topic: str | None = None) -> Any:
    """A ``Subscriber.wait_for`` condition: each alert (as many times as in EVE) arrived, on ``topic`` if given."""
    expected = Counter(canonical(a) for a in alerts)

    def delivered(messages: list) -> bool:
        got = Counter(canonical(json.loads(r.payload)) for r in messages if topic in (None, r.topic))
        return all(got[k] >= n for k, n in expected.items())

    return delivered


def retained(broker: Mosquitto, topic: str) -> bytes:
    """What a new subscriber gets at once on ``topic``: the retained message."""
    with Subscriber(broker, topic) as late:
        got = late.wait_for(lambda m: any(r.retain for r in m), timeout=5)
    return [r.payload for r in got if r.retain][-1]


def test_end_to_end_mqtt_metrics_eve(mining: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    with Subscriber(mosquitto, "netgpt/#", client_id="watcher-e2e") as watcher:
        daemon = Daemon(tmp_path, "--source", f"pcap:{mining}", "--replay-speed", "3", "--mqtt", mosquitto.url,
                        "--metrics", metrics, "--site", "lab", "--sensor", "s1")  # fmt: skip
        try:
            daemon.wait_for_log("started")
            watcher.wait_for(lambda m: any(r.topic == "netgpt/lab/s1/status" and r.payload == b"online" for r in m))
            assert retained(mosquitto, "netgpt/lab/s1/status") == b"online"
            watcher.wait_for(lambda m: any(r.topic == "netgpt/lab/s1/alerts" for r in m), timeout=20)
            scraped = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
            assert "netgpt_packets_total" in scraped and 'provider="CPUExecutionProvider"' in scraped
            time.sleep(1.0)
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
        alerts = daemon.events("alert")
        assert alerts, "the mining capture should raise alerts"
        assert {a["alert"]["category"] for a in alerts} >= {"mining"}
        assert len(daemon.events("flow")) < 1325, "SIGTERM came before the capture's end"
        watcher.wait_for(every_alert_in(alerts, "netgpt/lab/s1/alerts"), timeout=10)
    assert retained(mosquitto, "netgpt/lab/s1/status") == b"offline"
    stopped = daemon.wait_for_log("stopped")
    assert stopped["flows"] == len(daemon.events("flow")) + summarised(daemon)


def test_broker_outage_loses_no_alert(mining: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:
    with Subscriber(mosquitto, "netgpt/+/+/alerts", client_id="watcher-outage") as watcher:
        daemon = Daemon(tmp_path, "--source", f"pcap:{mining}", "--replay-speed", "2.5", "--mqtt", mosquitto.url)
        try:
            daemon.wait_for_log("started")
            watcher.wait_for(lambda m: len(m) > 0, timeout=20)
            mosquitto.stop()
            time.sleep(2.5)  # alerts go to the outbox meanwhile
            mosquitto.start()
            assert daemon.wait() == 0  # the file ends
        finally:
            daemon.kill()
        log = daemon.entries()
        assert any(e.get("event") == "mqtt_disconnected" for e in log)
        watcher.wait_for(every_alert_in(daemon.events("alert")), timeout=20)
    stats = daemon.events("stats")[-1]["netgpt"]["stats"]
    assert stats["plugins"]["mqtt"]["outbox_dropped"] == 0


def summarised(daemon: Daemon) -> int:
    """Flows a flood summary counted instead of writing them (the capture has a sweep: netgptd.flood_log)."""
    return sum(e["flood_summary"]["flows"] for e in daemon.events("flood_summary"))


# For the tests that compare every flow record: which of a flood's flows are written depends on when the
# model's verdicts let them out.
EVERY_FLOW = "[flood_log]\nenabled = false\n"


def flow_key(event: dict[str, Any]) -> tuple[str, str]:
    """A flow record's identity that does not depend on the run: its Community ID and its start."""
    return event["community_id"], event["flow"]["start"]


def test_reload_keeps_every_flow(mining: Path, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text(EVERY_FLOW + "[model]\nalert_confidence = 0.9\n[plugins.rules]\n")
    plain = Daemon(tmp_path / "plain", "--config", str(config), "--source", f"pcap:{mining}")
    assert plain.wait() == 0
    daemon = Daemon(tmp_path / "reloaded", "--config", str(config), "--source", f"pcap:{mining}", "--replay-speed", "3")
    try:
        daemon.wait_for_log("started")
        time.sleep(2.0)
        config.write_text(EVERY_FLOW + "[model]\nalert_confidence = 0.95\nmax_batch = 64\n[plugins.rules]\n"
                          "cooldown_s = 30.0\n")
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_for_log("reloaded")
        assert reloaded["flows_tracked"] > 0 and reloaded["plugins_restarted"] == ["rules"]
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    # The same flows (flow ids differ: each run numbers its own, netgptd.flow_ids), each reported once.
    keys = sorted(flow_key(e) for e in daemon.events("flow"))
    assert keys == sorted(flow_key(e) for e in plain.events("flow")) and len(set(keys)) == len(keys)
    # The reload lost no verdict: flows without payload are the only ones without, in both runs.
    apps = {flow_key(e): e["netgpt"]["app"] for e in plain.events("flow")}
    assert {flow_key(e): e["netgpt"]["app"] for e in daemon.events("flow")} == apps
    assert sum(a is None for a in apps.values()) == plain.events("stats")[-1]["netgpt"]["stats"]["unclassified"]["no_payload"]


def test_bad_reload_keeps_running(mining: Path, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text("[plugins.rules]\n")
    daemon = Daemon(tmp_path, "--config", str(config), "--source", f"pcap:{mining}", "--replay-speed", "4")
    try:
        daemon.wait_for_log("started")
        config.write_text("[model]\nmax_bach = 3\n")
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_for_log("reload_failed")
        assert "[model] max_bach: unknown key" in failed["error"]
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    assert len(daemon.events("flow")) + summarised(daemon) == 1325


def test_overload_counts_unclassified_and_stays_bounded(corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text(EVERY_FLOW + "[model]\nqueue = 16\nmax_batch = 8\nmax_wait_ms = 50\n[stats]\ninterval = 0.1\n"
                      "[plugins.rules]\n")
    daemon = Daemon(tmp_path, "--config", str(config), "--source", f"pcap:{corpus / 'mining/cgminer.g2.pcapng'}")
    peak_kib = 0
    while daemon.process.poll() is None:  # the kernel's high-water mark of the daemon's resident memory
        try:
            status = Path(f"/proc/{daemon.process.pid}/status").read_text()
            peak_kib = max(peak_kib, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.02)
    assert daemon.wait(120) == 0
    stats = [e["netgpt"]["stats"] for e in daemon.events("stats")]
    final = stats[-1]
    assert final["unclassified"].get("overload", 0) > 0
    assert final["classified"] > 0
    flows = daemon.events("flow")
    assert len(flows) == final["flows"]  # every flow is reported, classified or not
    assert sum(1 for f in flows if f["netgpt"]["app"] is None) == sum(final["unclassified"].values())
    assert all(s["queues"]["classify"] <= s["queue_limits"]["classify"] for s in stats)
    assert len(stats) >= 3  # at start, at least one while running, at the end
    assert 0 < peak_kib < 400 * 1024, f"peak RSS {peak_kib} KiB"


def test_notify_ready_then_watchdog_pings(mining: Path, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        daemon = Daemon(tmp_path, "--source", f"pcap:{mining}", "--replay-speed", "2", "--no-model",
                        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})  # fmt: skip
        try:
            first = sock.recv(4096).decode()
            assert "READY=1" in first.split("\n")
            ready_at = time.monotonic()
            pings = []
            while time.monotonic() - ready_at < 2.0:
                message = sock.recv(4096).decode()
                if message == "WATCHDOG=1":
                    pings.append(time.monotonic())
            daemon.signal(signal.SIGTERM)
            messages = []
            sock.settimeout(10)
            while "STOPPING=1" not in messages:
                messages.extend(sock.recv(4096).decode().split("\n"))
            assert daemon.wait() == 0
        finally:
            daemon.kill()
    assert 6 <= len(pings) <= 12, pings  # every 0.2 s: half of WATCHDOG_USEC
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.5


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("[model]\nmax_batch = \"x\"\n", "[model] max_batch: expected int, got str 'x'"),
        ("[plugins.nosuch]\n", "[plugins.nosuch]: unknown plugin"),
        ("[model]\npath = \"/nonexistent/model\"\n", "/nonexistent/model"),
        ("[capture]\nsource = \"pcap:/nonexistent.pcap\"\n", "no such capture file: /nonexistent.pcap"),
    ],
)
def test_bad_input_is_one_clear_line(setup: str, message: str, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text(setup)
    result = subprocess.run([sys.executable, "-m", "netgptd", "run", "--config", str(config), "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("netgptd: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_broker_is_a_warning_and_alerts_wait(mining: Path, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--source", f"pcap:{mining}", "--mqtt", f"mqtt://127.0.0.1:{free_port()}")
    assert daemon.wait() == 0
    warning = next(e for e in daemon.entries() if e.get("event") == "mqtt_disconnected")
    assert warning["level"] == "warning" and "refused" in warning["error"].lower()
    stats = daemon.events("stats")[-1]["netgpt"]["stats"]
    assert stats["plugins"]["mqtt"]["outbox_depth"] == len(daemon.events("alert")) > 0


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
@pytest.mark.parametrize("kind", ["live", "pyshark"])
def test_live_source_until_sigterm(kind: str, tmp_path: Path) -> None:
    """Capture on lo (a BPF for one port), then SIGTERM: every conversation is reported as a flow."""
    port = free_port()
    config = tmp_path / "netgptd.toml"
    config.write_text(f"[capture]\nbpf = \"udp port {port}\"\n[plugins.rules]\n")
    daemon = Daemon(tmp_path, "--config", str(config), "--source", f"{kind}:lo")
    try:
        daemon.wait_for_log("started", timeout=60)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for client in range(5):
                sender.sendto(b"hello %d" % client, ("127.0.0.1", port))
                time.sleep(0.05)
        time.sleep(1.5)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    flows = daemon.events("flow")
    assert len(flows) == 1 and flows[0]["dest_port"] == port and flows[0]["flow"]["pkts_toserver"] == 5
    assert flows[0]["flow"]["reason"] == "shutdown"


def test_logrotate_moves_eve_and_sighup_reopens_it_losing_nothing(mining: Path, tmp_path: Path) -> None:
    """The shipped logrotate snippet, run by logrotate itself, pointed at this daemon's EVE folder and pid."""
    logrotate = shutil.which("logrotate") or pytest.skip("logrotate is not installed (Debian package logrotate)")
    config = tmp_path / "netgptd.toml"
    config.write_text(EVERY_FLOW + "[plugins.rules]\n")
    daemon = Daemon(tmp_path / "logs", "--config", str(config), "--source", f"pcap:{mining}", "--replay-speed", "3")
    snippet = (REPO / "systemd" / "netgptd.logrotate").read_text()
    assert "/var/log/netgptd/*.json {" in snippet and "systemctl reload netgptd.service" in snippet
    snippet = snippet.replace("/var/log/netgptd/", f"{daemon.eve.parent}/")
    snippet = snippet.replace("systemctl reload netgptd.service", f"kill -HUP {daemon.process.pid}")
    snippet = snippet.replace("    su netgptd netgptd\n", "")  # no such user here; the test runs as one user
    rotate = tmp_path / "logrotate.conf"
    rotate.write_text(snippet)
    try:
        daemon.wait_for_log("started")
        time.sleep(1.5)
        done = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "logrotate.state"), str(rotate)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        daemon.wait_for_log("reloaded")
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    (rotated,) = daemon.eve.parent.glob("eve.json-*")
    texts = [rotated.read_text(), daemon.eve.read_text()]
    assert all(text.endswith("\n") for text in texts)
    old, new = ([json.loads(line) for line in text.splitlines()] for text in texts)
    assert old and new, "lines on both sides of the rotation"
    flows = [e["flow_id"] for e in old + new if e["event_type"] == "flow"]
    assert len(flows) == len(set(flows)) == new[-1]["netgpt"]["stats"]["flows"] == 1325, "none lost, none twice"
    assert daemon.eve.stat().st_mode & 0o777 == 0o640


def early_closing_clients(address: str, count: int) -> None:
    """HTTP clients that send a request and close at once, unread (a scrape that timed out): the
    server's answer then meets a closed socket, which raises SIGPIPE in the writer."""
    host, port = address.rsplit(":", 1)
    for _ in range(count):
        with socket.create_connection((host, int(port)), timeout=5) as client:
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: netgptd\r\n\r\n")
        time.sleep(0.01)


def test_http_clients_that_close_early_do_not_kill_the_daemon(mining: Path, tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    daemon = Daemon(tmp_path, "--source", f"pcap:{mining}", "--replay-speed", "1", "--no-model", "--metrics", metrics)
    try:
        daemon.wait_for_log("metrics_listening")
        early_closing_clients(metrics, 100)
        scraped = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
        assert "netgpt_packets_total" in scraped
        assert daemon.process.poll() is None, f"the daemon died (status {daemon.process.returncode})"
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_a_failure_inside_the_pipeline_is_a_non_zero_exit_and_one_line(tmp_path: Path) -> None:
    """Not a "stopped" line and status 0 (systemd would not restart the service), nor a traceback.

    The fault needs a value the configuration check now refuses (a community ID seed beyond its 16
    bits, as a wrong-typed tokenizer size once reached the flow table); this process removes that
    one check, so the value reaches the pipeline.
    """
    config = tmp_path / "netgptd.toml"
    config.write_text("[flows]\ncommunity_id_seed = 70000\n[plugins.rules]\n")
    capture = write_demo_capture(tmp_path / "demo.pcapng")
    code = "import sys; from netgptd import cli, config; config.CHECKS['flows'].pop('community_id_seed'); sys.exit(cli.main())"
    result = subprocess.run([sys.executable, "-c", code, "run", "--config", str(config), "--no-model", "--source",
                             f"pcap:{capture}", "--state-dir", str(tmp_path / "state"), "--eve", str(tmp_path / "eve.json")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    reason = "struct.error: 'H' format requires 0 <= number <= 65535 (at community_id.py:"
    logs, plain = [], []  # stderr: the JSON log (not a terminal), then the one line for a person
    for line in result.stderr.splitlines():
        (logs if line.startswith("{") else plain).append(line)
    assert plain == [plain[-1]] and plain[-1].startswith(f"netgptd: error: {reason}"), result.stderr
    assert result.stderr.splitlines()[-1] == plain[-1]
    failed = [json.loads(line) for line in logs if '"failed"' in line]
    assert len(failed) == 1 and failed[0]["level"] == "error" and failed[0]["error"].startswith(reason)


def bundle_with(tmp_path: Path, change: Any) -> Path:
    """A copy of the shipped model bundle with ``change(folder)`` applied."""
    folder = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, folder)
    change(folder)
    return folder


def edit_manifest(edit: Any) -> Any:
    def change(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return change


def garbage_model(folder: Path) -> None:
    """Not an ONNX model, with its sha256 in the manifest: the checksum passes, onnxruntime refuses."""
    (folder / "model.onnx").write_bytes(b"this is not a protobuf" * 100)
    edit_manifest(lambda m: m.update(sha256=sha256_file(folder / "model.onnx")))(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (edit_manifest(lambda m: m["tokenizer"].update(packets="3")),
         "manifest.json in {bundle}: tokenizer packets: expected int, got str '3'"),
        (edit_manifest(lambda m: m["tokenizer"].update(payload_bytes=10**12)),
         "manifest.json in {bundle}: tokenizer payload_bytes: must be between 0 and 65535, not 1000000000000"),
        (lambda folder: (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000),
         "manifest.json in {bundle} cannot be read: nested too deeply"),
        (garbage_model, "model.onnx in {bundle}: onnxruntime cannot load it: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF"),
    ],
    ids=["tokenizer-string", "tokenizer-absurd", "nested-manifest", "garbage-onnx"],
)
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_bad_model_bundle_is_one_clear_line(change: Any, message: str, command: str, tmp_path: Path) -> None:
    bundle = bundle_with(tmp_path, change)
    capture = write_demo_capture(tmp_path / "demo.pcapng")
    result = subprocess.run([sys.executable, "-m", "netgptd", command, "--model", str(bundle), "--source", f"pcap:{capture}",
                             "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("netgptd: error: " + message.format(bundle=bundle)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
