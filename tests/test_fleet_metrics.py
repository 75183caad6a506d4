"""A fleet's metrics at the centre: site Prometheus servers federated by a central one (``deploy/prometheus``).

Real parts: three ``netgptd run`` sensors at two sites (north: n1 and n2,
south: s1) replaying the demo capture with the plugins every panel reads
(tests/test_grafana.py's live configuration: rules, trends, mqtt, ask); one
Debian Prometheus per site from the shipped ``site.yml`` (its site, its
sensors as targets and a 1 s interval filled in), and a central one from
``central.yml`` federating both. Then, at the centre, every panel query of
every dashboard returns data with ``$site`` and ``$sensor`` set to each
sensor in turn, and the fleet dashboard's per-site and per-sensor panels
name every site and sensor.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from broker import free_port
from test_grafana import (LIVE_CONFIG, LIVE_SPEED, NETGPTD, http_get, mqtt_broker, process, promql, queries,
                          substitute, wait_for)  # fmt: skip

from netgptd.synth.demo import write_demo_capture

yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) reads the shipped Prometheus configurations")

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "prometheus"
SITES = {"north": ["n1", "n2"], "south": ["s1"]}
FAST = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
DEADLINE_S = 40.0  # after three federated scrapes of every sensor, for every query to have given data


def site_config(site: str, targets: dict[str, int] | dict[str, str]) -> dict[str, Any]:
    """site.yml for ``site``: its sensors (name -> metrics port on loopback, or HOST:PORT) as targets, scraped
    every second."""
    config = yaml.safe_load((DEPLOY / "site.yml").read_text(encoding="utf-8"))
    config["global"].update(FAST)
    config["global"]["external_labels"]["site"] = site
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}" if isinstance(port, int) else port],
                              "labels": {"sensor": name}} for name, port in targets.items()]  # fmt: skip
    return config


def central_config(sites: list[str]) -> dict[str, Any]:
    """central.yml federating the site Prometheus servers at ``sites`` (HOST:PORT), every second."""
    config = yaml.safe_load((DEPLOY / "central.yml").read_text(encoding="utf-8"))
    config["global"].update(FAST)
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": sites}]
    return config


def start_prometheus(stack: contextlib.ExitStack, folder: Path, config: dict[str, Any]) -> str:
    """Debian's Prometheus with ``config`` on a free port; its base URL once ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    folder.mkdir(parents=True)
    (folder / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    port, log = free_port(), folder / "prometheus.log"
    cmd = [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    proc = stack.enter_context(process(cmd, log))
    base = f"http://127.0.0.1:{port}"
    wait_for(f"prometheus in {folder.name}", lambda: http_get(f"{base}/-/ready"), 30, proc, log)
    return base


def test_promtool_accepts_the_shipped_configurations() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    for name in ("site.yml", "central.yml"):
        done = subprocess.run([promtool, "check", "config", str(DEPLOY / name)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


@pytest.mark.slow
def test_the_central_prometheus_has_every_sensor_for_every_panel(tmp_path: Path) -> None:
    capture = write_demo_capture(tmp_path / "office.pcapng")
    ports = {site: {name: free_port() for name in names} for site, names in SITES.items()}
    sensors = [(site, name) for site, names in SITES.items() for name in names]
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(mqtt_broker(tmp_path))
        if broker is None:
            pytest.skip("mosquitto not installed: the MQTT panels would have no data")
        daemons = []
        for site, name in sensors:
            folder = tmp_path / "sensors" / site / name
            (folder / "state").mkdir(parents=True)
            config = folder / "netgptd.toml"
            config.write_text(LIVE_CONFIG.format(state_dir=folder / "state") +
                              f'\n[plugins.ask]\nurl = "{broker}"\nintents = false\n', encoding="utf-8")  # fmt: skip
            cmd = [*NETGPTD, "run", "--config", str(config), "--source", f"pcap:{capture}", "--replay-speed",
                   str(LIVE_SPEED), "--metrics", f"127.0.0.1:{ports[site][name]}", "--site", site, "--sensor", name,
                   "--mqtt", broker]  # fmt: skip
            daemons.append(stack.enter_context(process(cmd, folder / "netgptd.log")))
        site_bases = [start_prometheus(stack, tmp_path / f"prometheus-{site}", site_config(site, ports[site]))
                      for site in SITES]  # fmt: skip
        central = start_prometheus(stack, tmp_path / "prometheus-central",
                                   central_config([b.removeprefix("http://") for b in site_bases]))  # fmt: skip

        def running() -> bool:
            return all(d.poll() is None for d in daemons)

        # rate() needs two samples in its window: three federated scrapes of every sensor.
        scraped = 'count_over_time(up{job="netgptd"}[1m]) >= 3 and up{job="netgptd"} == 1'

        def every_sensor_scraped() -> bool:
            found = promql(central, scraped)["data"]["result"]
            return {(r["metric"].get("site"), r["metric"].get("sensor")) for r in found} == set(sensors)

        wait_for("three federated scrapes of every sensor", every_sensor_scraped, 60)

        pending = {(qid, site, name): substitute(expr.replace("$site", site).replace("$sensor", name))
                   for qid, expr in queries() for site, name in sensors}  # fmt: skip
        deadline = time.monotonic() + DEADLINE_S
        while pending and time.monotonic() < deadline and running():
            for key, expr in list(pending.items()):
                answer = promql(central, expr)
                assert answer["status"] == "success", f"{key}: {answer}"
                if answer["data"]["result"]:
                    del pending[key]
            if pending:
                time.sleep(1)
        assert not pending, "queries with no data at the centre:\n" + "\n".join(
            f"{site}/{name} {qid}: {expr}" for (qid, site, name), expr in sorted(pending.items()))

        def by(expr: str, *labels: str) -> dict[tuple[str, ...], float]:
            return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1])
                    for r in promql(central, expr)["data"]["result"]}  # fmt: skip

        fleet = {qid.split(":")[1]: expr for qid, expr in queries() if qid.startswith("fleet.json:")}
        every = {"$site": ".*", "$sensor": ".*"}

        def fleet_query(title: str) -> str:
            expr = fleet[title]
            for variable, value in every.items():
                expr = expr.replace(variable, value)
            return substitute(expr)

        assert by(fleet_query("Sensors up by site"), "site") == {("north",): 2.0, ("south",): 1.0}
        assert set(by(fleet_query("Sensors"), "site", "sensor")) == set(sensors)
        assert set(by(fleet_query("Alerts by site"), "site")) == {("north",), ("south",)}
        assert {k[:2] for k in by(fleet_query("Alerts by sensor"), "site", "sensor", "category")} == set(sensors)
        models = by(fleet_query("Model versions in use"), "name", "version")
        assert sum(models.values()) == len(sensors) and all(name for name, _ in models), models
        assert set(by(fleet_query("Sensors by model"), "site", "sensor")) == set(sensors)
