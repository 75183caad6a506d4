"""Reloads of a running daemon keep every output working, and a dead output is not called healthy.

The daemon runs as a process with a real broker, an EVE file and its
Prometheus endpoint, on a real capture; SIGHUP comes again and again while
packets flow. The capture is followed by a one-hour gap (its last packet
again, an hour later, made with Wireshark's editcap/mergecap), so the sensor
goes quiet after the traffic and the three outputs can be compared at rest.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from broker import Mosquitto, Subscriber, free_port, mosquitto, require  # noqa: F401 -- the fixture
from netgptd.capture.file_source import PcapFileSource
from netgptd.config import CaptureSettings, Settings
from netgptd.pipeline import Pipeline
from netgptd.plugin_host import PluginHost, SensorContext, hookimpl
from netgptd.sdnotify import Notifier
from netgptd_plugins.prometheus import PrometheusPlugin
from test_daemon import MINING, Daemon, retained

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

MINING_PACKETS = 7163


@pytest.fixture
def mining_then_quiet(corpus: Path, tmp_path: Path) -> Path:
    """The mining capture, then its last packet again one hour later."""
    require("editcap", "wireshark-common")
    source, last, shifted, out = corpus / MINING, tmp_path / "last.pcapng", tmp_path / "later.pcapng", tmp_path / "gap.pcapng"
    subprocess.run(["editcap", "-r", str(source), str(last), str(MINING_PACKETS)], check=True, capture_output=True)
    subprocess.run(["editcap", "-t", "3600", str(last), str(shifted)], check=True, capture_output=True)
    subprocess.run(["mergecap", "-a", "-w", str(out), str(source), str(shifted)], check=True, capture_output=True)
    return out


def scrape(address: str) -> dict[str, float]:
    """Prometheus text exposition as {series: value} (comments skipped)."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    return series


def metric_sum(series: dict[str, float], name: str) -> float:
    return sum(v for k, v in series.items() if re.fullmatch(rf"{name}(\{{.*\}})?", k))


def config_text(tmp: Path, broker: str, metrics: str, cooldown: float) -> str:
    return (f"[stats]\ninterval = 0.5\n[plugins.rules]\ncooldown_s = {cooldown}\n"
            f"[plugins.eve]\npath = \"{tmp / 'eve.json'}\"\n[plugins.mqtt]\nurl = \"{broker}\"\n"
            f"[plugins.prometheus]\nlisten = \"{metrics}\"\n[sensor]\nsite = \"lab\"\nsensor = \"s1\"\n")  # fmt: skip


def test_reloads_keep_eve_mqtt_and_metrics_in_step(mining_then_quiet: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    config = tmp_path / "netgptd.toml"
    config.write_text(config_text(tmp_path, mosquitto.url, metrics, 60.0))
    with Subscriber(mosquitto, "netgpt/lab/s1/alerts", client_id="watcher-reload") as watcher:
        daemon = Daemon(tmp_path, "--config", str(config), "--source", f"pcap:{mining_then_quiet}",
                        "--replay-speed", "2")  # fmt: skip
        try:
            daemon.wait_for_log("started")
            # The stats-fed gauges move with every stats event (0.5 s); the packet counter with the traffic.
            uptime = [metric_sum(scrape(metrics), "netgpt_uptime_seconds")]
            for n in range(1, 9):  # reloads while the capture plays: settings unchanged, or the rules' changed
                time.sleep(0.8)
                config.write_text(config_text(tmp_path, mosquitto.url, metrics, 60.0 + (n // 2) % 2))  # unchanged, changed, unchanged, ...
                daemon.signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while sum(e.get("event") == "reloaded" for e in daemon.entries()) < n:
                    assert time.monotonic() < deadline, f"reload {n} did not finish:\n{daemon.log.read_text()}"
                    time.sleep(0.05)
                uptime.append(metric_sum(scrape(metrics), "netgpt_uptime_seconds"))
            assert all(b > a for a, b in zip(uptime, uptime[1:])), f"metrics froze across reloads: {uptime}"

            deadline = time.monotonic() + 30  # the traffic ends; the hour's gap follows
            while metric_sum(scrape(metrics), "netgpt_packets_total") < MINING_PACKETS:
                assert time.monotonic() < deadline, "the capture's packets did not all arrive"
                time.sleep(0.2)
            time.sleep(2.0)  # EVE's flush delay and the last classifications
            eve_alerts = daemon.events("alert")
            assert eve_alerts, "the mining capture raises alerts"
            watcher.wait_for(lambda m: len(m) >= len(eve_alerts), timeout=10)
            time.sleep(0.5)
            assert len(watcher.messages) == len(eve_alerts)
            assert metric_sum(scrape(metrics), "netgpt_alerts_total") == len(eve_alerts)
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
        final_alerts = daemon.events("alert")
        watcher.wait_for(lambda m: len(m) >= len(final_alerts), timeout=10)
    assert retained(mosquitto, "netgpt/lab/s1/status") == b"offline"
    stopped = daemon.wait_for_log("stopped")
    assert stopped["alerts"] == len(final_alerts)


class Unwell:
    """A plugin whose output died (what eve or mqtt report when theirs does)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @hookimpl
    def netgpt_health(self) -> str | None:
        return self.reason


def test_dead_output_withholds_the_watchdog_and_says_why(corpus: Path, tmp_path: Path) -> None:
    """In process, on a real notify socket: pings while all works, none while a plugin is dead, back after."""
    path = tmp_path / "notify.sock"
    unwell = Unwell()
    host = PluginHost({})
    host.add(unwell, "unwell")
    host.settings["unwell"] = {}
    notifier = Notifier(str(path), watchdog_usec=100_000)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        settings = Settings(capture=CaptureSettings(source=f"pcap:{corpus / MINING}", replay_speed=1.0), plugins={})
        pipeline = Pipeline(settings, PcapFileSource(corpus / MINING), host, None, notifier)

        def received() -> list[str]:
            out = []
            while True:
                try:
                    out.extend(sock.recv(4096).decode().split("\n"))
                except BlockingIOError:
                    return out

        async def main() -> list[list[str]]:
            task = asyncio.create_task(pipeline.run())
            phases = []
            for reason in (None, "output stuck", None):
                unwell.reason = reason
                received()
                await asyncio.sleep(0.5)
                phases.append(received())
            pipeline.stop()
            await asyncio.wait_for(task, 30)
            return phases

        healthy, dead, mended = asyncio.run(main())
    assert healthy.count("WATCHDOG=1") >= 3
    assert "WATCHDOG=1" not in dead and "STATUS=UNHEALTHY: plugin unwell: output stuck" in dead
    assert mended.count("WATCHDOG=1") >= 3


def test_an_unregistered_enabled_plugin_counts_as_dead() -> None:
    """What the old reload did to every plugin: still enabled, no longer called."""
    host = PluginHost({"rules": {}})
    assert host.dead() == {}
    host.manager.unregister(name="rules")
    assert host.dead() == {"rules": "not running"}


def test_stopped_line_counts_rule_alerts_too(corpus: Path, tmp_path: Path) -> None:
    """Without a model every alert is a rule's: the last log line must not say 0."""
    daemon = Daemon(tmp_path, "--source", f"pcap:{corpus / 'ddos/amp.TCP.reflection.SYNACK.pcap'}", "--no-model")
    try:
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    alerts = daemon.events("alert")
    assert alerts, "the reflection capture raises rule alerts"
    assert daemon.wait_for_log("stopped")["alerts"] == len(alerts)


def test_metrics_server_that_stopped_is_dead() -> None:
    plugin = PrometheusPlugin(listen=f"127.0.0.1:{free_port()}")
    plugin.netgpt_start(SensorContext())
    try:
        assert plugin.netgpt_health() is None
        assert plugin._server is not None and plugin._thread is not None
        plugin._server.shutdown()  # its serve_forever loop ends, as a crash of that thread would end it
        plugin._thread.join(5)
        assert plugin.netgpt_health() == "the metrics HTTP server stopped"
    finally:
        plugin.netgpt_close()
