"""``netgptd run`` under a SIGHUP every few seconds: do EVE, MQTT and Prometheus stay in step?

The issue's check of a reload that keeps every output: the real daemon (a
subprocess) with the mqtt, eve, prometheus and rules plugins, a real
mosquitto on a free port, the mining capture replayed slowly enough to
last ``--duration`` seconds and then an hour's silence (the test's capture
with a gap, tests/test_reload.py). Every ``--every`` seconds the
configuration file is rewritten (the rules' cool-down alternates between
two values, so half the reloads restart a plugin and half change nothing)
and SIGHUP is sent. Each row: the reload's number, seconds since start,
``netgpt_packets_total`` and the alert counts in EVE, on MQTT and in
``netgpt_alerts_total`` at that moment. At the end, once the traffic is
over and the sensor is quiet, the three alert counts must be equal (the
verdict line), and again after SIGTERM for EVE and MQTT.

Needs the corpus, mosquitto and Wireshark's editcap/mergecap (the test
harness's helpers are reused: tests/ is put on the path).

    python bench/reload_soak.py [--duration 120] [--every 5]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from broker import Mosquitto, Subscriber, free_port  # noqa: E402
from machine import cpu_model  # noqa: E402
from test_daemon import MINING, Daemon  # noqa: E402
from test_reload import MINING_PACKETS, config_text, metric_sum, scrape  # noqa: E402

CAPTURE_SECONDS = 18.2  # the mining capture's duration


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic (the replay is slowed to last this long)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between reloads")
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/corpus")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}; {args.duration:.0f} s of traffic, SIGHUP every {args.every:g} s")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        capture = tmp / "gap.pcapng"
        last, later = tmp / "last.pcapng", tmp / "later.pcapng"
        subprocess.run(["editcap", "-r", str(args.corpus / MINING), str(last), str(MINING_PACKETS)], check=True)
        subprocess.run(["editcap", "-t", "3600", str(last), str(later)], check=True)
        subprocess.run(["mergecap", "-a", "-w", str(capture), str(args.corpus / MINING), str(later)], check=True)
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        metrics = f"127.0.0.1:{free_port()}"
        config = tmp / "netgptd.toml"
        config.write_text(config_text(tmp, broker.url, metrics, 60.0))
        speed = CAPTURE_SECONDS / args.duration
        try:
            with Subscriber(broker, "netgpt/lab/s1/alerts", client_id="soak") as watcher:
                daemon = Daemon(tmp, "--config", str(config), "--source", f"pcap:{capture}",
                                "--replay-speed", f"{speed:.4f}")  # fmt: skip
                try:
                    daemon.wait_for_log("started")
                    started = time.monotonic()
                    print(f"{'reload':>6} {'s':>6} {'packets':>8} {'eve':>5} {'mqtt':>5} {'metric':>6}")
                    n = 0
                    while True:
                        series = scrape(metrics)
                        packets = metric_sum(series, "netgpt_packets_total")
                        print(f"{n:6d} {time.monotonic() - started:6.1f} {packets:8.0f} {len(daemon.events('alert')):5d} "
                              f"{len(watcher.messages):5d} {metric_sum(series, 'netgpt_alerts_total'):6.0f}", flush=True)  # fmt: skip
                        if packets >= MINING_PACKETS:
                            break
                        time.sleep(args.every)
                        n += 1
                        config.write_text(config_text(tmp, broker.url, metrics, 60.0 + (n // 2) % 2))
                        daemon.signal(signal.SIGHUP)
                    time.sleep(3.0)  # quiet now: EVE's flush delay, the last verdicts and deliveries
                    eve, metric = len(daemon.events("alert")), metric_sum(scrape(metrics), "netgpt_alerts_total")
                    try:
                        watcher.wait_for(lambda m: len(m) >= eve, timeout=10)
                    except AssertionError:
                        pass
                    mqtt = len(watcher.messages)
                    reloads = sum(e.get("event") == "reloaded" for e in daemon.entries())
                    print(f"at rest after {reloads} reloads: alerts in EVE {eve}, on MQTT {mqtt}, in metrics {metric:.0f}")
                    code = daemon.terminate()
                finally:
                    daemon.kill()
                final = len(daemon.events("alert"))
                try:
                    watcher.wait_for(lambda m: len(m) >= final, timeout=10)
                except AssertionError:
                    pass
                print(f"after SIGTERM (exit {code}): alerts in EVE {final}, on MQTT {len(watcher.messages)}")
        finally:
            broker.stop()
    same = eve == mqtt == metric and final == len(watcher.messages) and code == 0
    print("verdict:", "every output in step across every reload" if same else "OUTPUTS DISAGREE")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
