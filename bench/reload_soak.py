"""``netgptd run`` under a SIGHUP every few seconds: do EVE, MQTT and Prometheus stay in step?

The issue's check of a reload that keeps every output: the real daemon (a
subprocess) with the mqtt, eve, prometheus and rules plugins, a real
mosquitto on a free port, Debian's Prometheus scraping the daemon every
second, the mining capture replayed slowly enough to
last ``--duration`` seconds and then an hour's silence (the test's capture
with a gap, tests/test_reload.py). Every ``--every`` seconds the
configuration file is rewritten (the rules' cool-down alternates between
two values, so half the reloads restart a plugin and half change nothing)
and SIGHUP is sent. Each row: the reload's number, seconds since start,
``netgpt_packets_total`` and the alert counts in EVE, on MQTT and in
``netgpt_alerts_total`` at that moment. At the end, once the traffic is
over and the sensor is quiet, the alert counts in EVE, on MQTT, on the
metrics endpoint and in Prometheus must be equal, and Prometheus must have
seen ``netgpt_packets_total`` rise in every interval between two reloads
while traffic flowed (the verdict line); after SIGTERM, EVE and MQTT again.

Needs the corpus, mosquitto, prometheus and Wireshark's editcap/mergecap
(the test harness's helpers are reused: tests/ is put on the path).

    python bench/reload_soak.py [--duration 120] [--every 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
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


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus scraping ``target`` every second; its base URL once it is ready."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                  "scrape_configs": [{"job_name": "netgptd", "static_configs": [{"targets": [target]}]}]}))
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed (Debian package prometheus)")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/-/ready", timeout=1).read()
            return proc, base
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("prometheus did not become ready")


def prometheus_value(base: str, query: str, at: float | None = None) -> float:
    """An instant query's single value (0 when it has none)."""
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    body = json.loads(urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=5).read())
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


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
        prometheus, prom = start_prometheus(tmp, metrics)
        reload_times: list[float] = []
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
                        reload_times.append(time.time())
                    time.sleep(3.0)  # quiet now: EVE's flush delay, the last verdicts and deliveries
                    eve, metric = len(daemon.events("alert")), metric_sum(scrape(metrics), "netgpt_alerts_total")
                    try:
                        watcher.wait_for(lambda m: len(m) >= eve, timeout=10)
                    except AssertionError:
                        pass
                    mqtt = len(watcher.messages)
                    reloads = sum(e.get("event") == "reloaded" for e in daemon.entries())
                    time.sleep(2.0)  # two more scrapes
                    stored = prometheus_value(prom, "sum(netgpt_alerts_total)")
                    print(f"at rest after {reloads} reloads: alerts in EVE {eve}, on MQTT {mqtt}, on the metrics "
                          f"endpoint {metric:.0f}, in Prometheus {stored:.0f}")  # fmt: skip
                    # Prometheus's view between two reloads while packets still came: did the counter rise?
                    seen = [prometheus_value(prom, "sum(netgpt_packets_total)", at) for at in reload_times]
                    frozen = [i for i, (a, b) in enumerate(zip(seen, seen[1:]), 1) if b <= a and b < MINING_PACKETS]
                    print(f"Prometheus's netgpt_packets_total at each reload: {', '.join(f'{v:.0f}' for v in seen)}; "
                          f"intervals without progress: {frozen or 'none'}")  # fmt: skip
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
            prometheus.terminate()
            prometheus.wait(10)
    same = eve == mqtt == metric == stored and not frozen and final == len(watcher.messages) and code == 0
    print("verdict:", "every output in step across every reload" if same else "OUTPUTS DISAGREE")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
