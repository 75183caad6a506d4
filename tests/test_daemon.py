"""``netgptd run`` end to end, as a process, with real parts: mosquitto, captures, signals, sd_notify.

Each test starts the daemon the way systemd would (a subprocess, signals,
a NOTIFY_SOCKET made here) on a real capture from the corpus, replayed at
a speed that keeps it running for a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from broker import Mosquitto, Subscriber, free_port, mosquitto  # noqa: F401 -- the fixture

from netgptd.synth.demo import write_demo_capture

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

MINING = "mining/cgminer.g0.pcapng"  # 18 s, 7,163 packets, 1,325 flows, model alerts (mining) all along


class Daemon:
    """``python -m netgptd run ...`` in the background; its stdout is the JSON log."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.eve = tmp / "eve.json"
        self.log = tmp / "daemon.log"
        self.state = tmp / "state"
        command = [sys.executable, "-m", "netgptd", "run", "--state-dir", str(self.state), *args]
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
    assert stopped["flows"] == len(daemon.events("flow"))


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
    stats = daemon.events("stats")[-1]["stats"]
    assert stats["plugins"]["mqtt"]["outbox_dropped"] == 0


def test_reload_keeps_every_flow(mining: Path, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text("[model]\nalert_confidence = 0.9\n[plugins.rules]\n")
    plain = Daemon(tmp_path / "plain", "--config", str(config), "--source", f"pcap:{mining}")
    assert plain.wait() == 0
    daemon = Daemon(tmp_path / "reloaded", "--config", str(config), "--source", f"pcap:{mining}", "--replay-speed", "3")
    try:
        daemon.wait_for_log("started")
        time.sleep(2.0)
        config.write_text("[model]\nalert_confidence = 0.95\nmax_batch = 64\n[plugins.rules]\ncooldown_s = 30.0\n")
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_for_log("reloaded")
        assert reloaded["flows_tracked"] > 0 and reloaded["plugins_restarted"] == ["rules"]
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    ids = sorted(e["flow_id"] for e in daemon.events("flow"))
    assert ids == sorted(e["flow_id"] for e in plain.events("flow"))
    # The reload lost no verdict: flows without payload are the only ones without, in both runs.
    apps = {e["flow_id"]: e["netgpt"]["app"] for e in plain.events("flow")}
    assert {e["flow_id"]: e["netgpt"]["app"] for e in daemon.events("flow")} == apps
    assert sum(a is None for a in apps.values()) == plain.events("stats")[-1]["stats"]["unclassified"]["no_payload"]


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
    assert len(daemon.events("flow")) == 1325


def test_overload_counts_unclassified_and_stays_bounded(corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "netgptd.toml"
    config.write_text("[model]\nqueue = 16\nmax_batch = 8\nmax_wait_ms = 50\n[stats]\ninterval = 0.1\n[plugins.rules]\n")
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
    stats = [e["stats"] for e in daemon.events("stats")]
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
    stats = daemon.events("stats")[-1]["stats"]
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


def test_scrapes_that_hang_up_do_not_end_the_sensor(tmp_path: Path) -> None:
    """A scrape whose client hangs up before the answer (a busy sensor's scrape timing out, as under a flood in
    bench/flood_soak.py) is an EPIPE for that connection; it used to end the whole daemon by SIGPIPE."""
    port = free_port()
    capture = write_demo_capture(tmp_path / "demo.pcapng")
    daemon = Daemon(tmp_path, "--no-model", "--source", f"pcap:{capture}", "--replay-speed", "1",
                    "--metrics", f"127.0.0.1:{port}")  # fmt: skip
    try:
        daemon.wait_for_log("metrics_listening")
        for _ in range(200):
            if daemon.process.poll() is not None:
                break
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"GET /metrics HTTP/1.1\r\nHost: sensor\r\n\r\n")  # and gone before the answer
            time.sleep(0.01)
        assert daemon.process.poll() is None, f"the sensor ended: exit {daemon.process.returncode}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert b"netgpt_build_info" in answer.read()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
