"""The whole fleet with each sensor in its own network namespace, for bench/fleet_netns.py and tests/test_fleet_netns.py.

Per site, a Linux bridge in the root namespace (``10.77.<k>.1/24``) where the
site's mosquitto listens (bridged over TLS to the central mosquitto on
loopback, from ``deploy/mosquitto``) and, beside it, the site's Prometheus
(``deploy/prometheus/site.yml``) federated by a central one
(``central.yml``); optionally the central inference service (``netgptd
serve-central``, Triton) that every sensor sends the flows its model is
unsure of. Each sensor is a ``netgptd run`` in its own namespace
(``fleet2-<run>-<site>-<sensor>``: its own network stack, a veth into its
site's bridge, ``10.77.<k>.<10+n>``, a default route through the bridge)
with its own site and sensor name and its own replay of the capture; it
reaches its site broker and the rollout's web server over the veth, and its
site's Prometheus scrapes it there. Every sensor but one per run (the
``control``, for the flow count) has ``[plugins.rollout]``.

The run (``netns_run``): once every sensor is online at the centre, ``netgptd
model publish`` announces release 0.2.0 at the central broker (as the
``publisher`` certificate, over TLS) for every site, the archive served over
HTTP from the root namespace; once every rollout sensor reports it at the
centre, the central broker stops for ``outage`` seconds (longer, up to a
minute more, until every sensor has written alerts meanwhile). Then the
sensors stop (SIGTERM: every flow flushed), and each one's alerts in its EVE
file are set against what the central collector received; the central
Prometheus must have every sensor, and the rollout sensors' model there is
0.2.0. Namespaces and bridges are removed on the way out, whatever happens.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from broker import free_port, require
from fleet import (Delivery, stop_group, brokers_of, bundle_version, collector, eve_alerts, rollout_config,
                   rollout_keys, sensor, served, statuses, tally, wait_until)  # fmt: skip
from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle
from netgptd.model.triton_serve import triton_name
from test_daemon import Daemon
from test_fleet_metrics import central_config, site_config, start_prometheus
from test_grafana import promql

PUBLISHER = "publisher"  # the certificate name central.acl lets announce rollouts
CONTROL = "control"  # the sensor without [plugins.rollout], first site
METRICS_PORT = 9400
RELEASE = "0.2.0"


@dataclass(frozen=True)
class Node:
    site: str
    name: str
    netns: str
    address: str

    @property
    def key(self) -> str:
        return f"{self.site}/{self.name}"

    @property
    def wrap(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.netns)


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def namespaces(sites: dict[str, list[str]], run: str) -> Iterator[tuple[dict[str, str], list[Node]]]:
    """Per site a bridge (its gateway address) and per sensor a namespace on it; all removed on the way out.
    ``run`` (3 characters) keeps the names of concurrent runs apart (interface names: 15 characters)."""
    require("ip", "iproute2")
    if os.geteuid() != 0:
        raise PermissionError("network namespaces need root")
    gateways: dict[str, str] = {}
    nodes: list[Node] = []
    bridges: list[str] = []
    try:
        for k, (site, names) in enumerate(sites.items(), start=1):
            bridge, gateway = f"fleet2{run}b{k}", f"10.77.{k}.1"
            ip("link", "add", bridge, "type", "bridge")
            bridges.append(bridge)
            ip("addr", "add", f"{gateway}/24", "dev", bridge)
            ip("link", "set", bridge, "up")
            gateways[site] = gateway
            for n, name in enumerate(names, start=1):
                node = Node(site, name, f"fleet2-{run}-{site}-{name}", f"10.77.{k}.{10 + n}")
                ip("netns", "add", node.netns)
                nodes.append(node)
                outside = f"fleet2{run}v{k}{n:02d}"
                ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
                ip("link", "set", outside, "master", bridge, "up")
                for args in (("addr", "add", f"{node.address}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                             ("link", "set", "lo", "up"), ("route", "add", "default", "via", gateway)):  # fmt: skip
                    ip("-n", node.netns, *args)
        yield gateways, nodes
    finally:
        for node in nodes:
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", node.netns)  # its veth pair goes with it
        for bridge in bridges:
            with contextlib.suppress(RuntimeError):
                ip("link", "del", bridge)


@contextlib.contextmanager
def web_server(folder: Path) -> Iterator[int]:
    """``folder`` over HTTP on every address of the root namespace (the sensors fetch the archive); its port."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass


def held_open(capture: Path, packets: int, out: Path) -> Path:
    """``capture``, then its last packet (number ``packets``) again an hour later: a sensor replaying it stays up
    after the traffic (its metrics scraped, its flows ended only when it stops) until it is stopped."""
    require("editcap", "wireshark-common")
    last, later = out.with_suffix(".last.pcapng"), out.with_suffix(".later.pcapng")
    subprocess.run(["editcap", "-r", str(capture), str(last), str(packets)], check=True, capture_output=True)
    subprocess.run(["editcap", "-t", "3600", str(last), str(later)], check=True, capture_output=True)
    subprocess.run(["mergecap", "-a", "-w", str(out), str(capture), str(later)], check=True, capture_output=True)
    return out


@dataclass
class NetnsRun:
    deliveries: list[Delivery]
    written_during_outage: dict[str, int]
    outage_s: float
    rollout_s: float  # from the announcement to every rollout sensor's report of it at the centre
    reports: dict[str, dict[str, Any]]  # site/sensor -> its last rollout report at the centre
    flows: dict[str, int]  # site/sensor -> flow events in its EVE file
    flows_by_version: dict[str, dict[str, int]]  # site/sensor -> model version -> classified flows
    central_verdicts: dict[str, int]  # site/sensor -> flows classified by the central inference service
    central_up: dict[str, float]  # site/sensor -> max of up{job="netgptd"} at the central Prometheus
    central_model: dict[str, str]  # site/sensor -> the model version netgpt_model_info last had there
    central_alerts: dict[str, float]  # site/sensor -> netgpt_alerts_total last scraped at the centre
    eve_alerts_then: dict[str, int]  # site/sensor -> alerts in its EVE file at that moment
    exit_codes: dict[str, int]


def _announce(archive_folder: Path, release: Path, url: str, keys: Any, central: Any, pki: Any,
              sites: list[str]) -> None:  # fmt: skip
    cert, key = pki.clients[PUBLISHER]
    command = [sys.executable, "-m", "netgptd", "model", "publish", str(release), "--archive",
               str(archive_folder / "release.tar.gz"), "--url", url, "--signing-key", str(keys.private),
               "--broker", central.url, "--ca-file", str(pki.ca), "--cert-file", str(cert), "--key-file", str(key),
               *[a for site in sites for a in ("--site", site)]]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"netgptd model publish: {done.stderr.strip()}")


def _central_metrics(base: str) -> tuple[dict[str, float], dict[str, str], dict[str, float]]:
    def by_sensor(expr: str) -> dict[str, Any]:
        found = promql(base, expr)["data"]["result"]
        return {f"{r['metric'].get('site')}/{r['metric'].get('sensor')}": r for r in found}

    up = {k: float(r["value"][1]) for k, r in by_sensor('max_over_time(up{job="netgptd"}[10m])').items()}
    model = {k: r["metric"].get("version", "") for k, r in by_sensor("last_over_time(netgpt_model_info[5s])").items()}
    alerts = {k: float(r["value"][1]) for k, r in by_sensor("sum by (site, sensor) (netgpt_alerts_total)").items()}
    return up, model, alerts


def _replayed(base: str) -> dict[str, float]:
    """site/sensor -> packets counted, at the central Prometheus."""
    found = promql(base, "sum by (site, sensor) (netgpt_packets_total)")["data"]["result"]
    return {f"{r['metric'].get('site')}/{r['metric'].get('sensor')}": float(r["value"][1]) for r in found}


@contextlib.contextmanager
def central_inference(folder: Path, python: Path, http_port: int) -> Iterator[None]:
    """``netgptd serve-central`` (the shipped bundle) on every address of the root namespace, once ready."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "netgptd", "serve-central", "--python", str(python), "--model",
               str(DEFAULT_BUNDLE), "--host", "0.0.0.0", "--http-port", str(http_port), "--grpc-port",
               str(free_port()), "--metrics-port", str(free_port())]  # fmt: skip
    with open(folder / "triton.log", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, (folder / "triton.log").read_text(errors="replace")[-2000:]
            with contextlib.suppress(OSError):
                return urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2).status == 200
            return False

        wait_until(ready, 90, "the central inference service ready")
        yield
    finally:
        stop_group(process)


def netns_run(folder: Path, capture: Path, packets: int, sites: dict[str, list[str]], speed: float, outage: float,
              log: Callable[[str], None] = lambda _: None, triton_python: Path | None = None) -> NetnsRun:  # fmt: skip
    """See the module docstring; ``capture`` is replayed by every sensor (see ``fleet.quiet_then`` and
    ``held_open``); its traffic is over once a sensor has counted ``packets`` (the held-open one comes later).
    With ``triton_python`` (the Python with PyTriton) the central inference service runs too, and every sensor
    sends it the flows its model is unsure of."""
    sites = {site: ([CONTROL] if i == 0 else []) + names for i, (site, names) in enumerate(sites.items())}
    run = f"{os.getpid() % 1000:03d}"
    keys = rollout_keys(folder / "keys")
    release = bundle_version(folder, RELEASE)
    daemons: dict[str, Daemon] = {}
    with contextlib.ExitStack() as stack:
        gateways, nodes = stack.enter_context(namespaces(sites, run))
        pki, central, brokers = stack.enter_context(brokers_of(folder, list(sites), (PUBLISHER,), gateways))
        inbox = stack.enter_context(collector(central, pki))
        (folder / "web").mkdir(exist_ok=True)
        port = stack.enter_context(web_server(folder / "web"))
        site_prometheus = [start_prometheus(stack, folder / f"prometheus-{site}", site_config(
            site, {n.name: f"{n.address}:{METRICS_PORT}" for n in nodes if n.site == site})) for site in sites]
        central_prometheus = start_prometheus(stack, folder / "prometheus-central", central_config(
            [b.removeprefix("http://") for b in site_prometheus]))  # fmt: skip
        central_port = free_port() if triton_python else 0
        if triton_python:
            stack.enter_context(central_inference(folder / "triton", triton_python, central_port))
        log(f"{len(nodes)} namespaces on {len(sites)} bridges, brokers, Prometheus"
            f"{' and the central inference service' if triton_python else ''} up; starting the sensors")  # fmt: skip
        try:
            for node in nodes:
                where = folder / "sensors" / node.site / node.name
                model = (f'[model]\ncentral_url = "http://{gateways[node.site]}:{central_port}"\n'
                         f'central_model = "{triton_name(load_bundle(DEFAULT_BUNDLE))}"\ncentral_below = 0.9\n'
                         "central_timeout_ms = 2000\n"
                         if triton_python else "")  # fmt: skip
                config = rollout_config(where, None if node.name == CONTROL else keys.public, brokers[node.site], model)
                daemons[node.key] = sensor(where, node.site, node.name, brokers[node.site], capture, speed, "--config",
                                           str(config), metrics=f"{node.address}:{METRICS_PORT}",
                                           wrap=node.wrap)  # fmt: skip
            rolling = [n.key for n in nodes if n.name != CONTROL]
            wait_until(lambda: all(statuses(inbox.messages).get(k) == b"online" for k in daemons), 90,
                       "every sensor online at the centre")  # fmt: skip
            wait_until(lambda: set(served(inbox.messages)) >= set(rolling), 30, "every rollout plugin connected")
            wait_until(lambda: all(eve_alerts(d) for d in daemons.values()), 90, "the traffic under way everywhere")
            announced = time.monotonic()
            _announce(folder / "web", release, f"http://{gateways[nodes[0].site]}:{port}/release.tar.gz", keys,
                      central, pki, list(sites))  # fmt: skip
            wait_until(lambda: all(served(inbox.messages).get(k, {}).get("serving", {}).get("version") == RELEASE
                                   for k in rolling), 60, f"{RELEASE} served by every rollout sensor")  # fmt: skip
            rollout_s = time.monotonic() - announced
            log(f"{RELEASE} served everywhere {rollout_s:.1f} s after its announcement; stopping the central broker "
                f"for {outage:.0f} s")  # fmt: skip
            before = {k: eve_alerts(d) for k, d in daemons.items()}
            stopped = time.monotonic()
            central.stop()
            time.sleep(outage)
            with contextlib.suppress(AssertionError):  # written_during_outage shows it
                wait_until(lambda: all(eve_alerts(d) > before[k] for k, d in daemons.items()), 60,
                           "alerts from every sensor during the outage")  # fmt: skip
            central.start()
            outage_s = time.monotonic() - stopped
            during = {k: eve_alerts(d) - before[k] for k, d in daemons.items()}
            log(f"central broker back after {outage_s:.1f} s; alerts written meanwhile: {sum(during.values())}")
            with contextlib.suppress(AssertionError):  # the table shows what is missing
                wait_until(lambda: _replayed(central_prometheus) == dict.fromkeys(daemons, packets), 90,
                           "every sensor's packets counted at the central Prometheus")  # fmt: skip
                wait_until(lambda: _central_metrics(central_prometheus)[2] == {k: eve_alerts(d) for k, d in
                                                                            daemons.items()}, 30,
                           "every sensor's alert count at the central Prometheus")  # fmt: skip
            up, model, central_alerts = _central_metrics(central_prometheus)
            eve_then = {k: eve_alerts(d) for k, d in daemons.items()}  # flows ended at the stop may add some
            exit_codes = {k: d.terminate() for k, d in daemons.items()}
            written = {k: d.events("alert") for k, d in daemons.items()}

            def all_in() -> bool:
                return all(tally(*k.split("/"), written[k], inbox.messages).delivered == len(written[k])
                           for k in daemons)  # fmt: skip

            with contextlib.suppress(AssertionError):  # the tally says what is missing
                wait_until(all_in, 60, "every alert at the centre")
            received = list(inbox.messages)
        finally:
            for daemon in daemons.values():
                daemon.kill()
    flows = {k: d.events("flow") for k, d in daemons.items()}
    # Flows written, plus a flood's flows written as a summary (the control sensor runs the rule detectors).
    summarised = {k: sum(e["flood_summary"]["flows"] for e in d.events("flood_summary")) for k, d in daemons.items()}
    by_version: dict[str, dict[str, int]] = {}
    central: dict[str, int] = {}
    for k, events in flows.items():
        counts: dict[str, int] = {}
        central[k] = 0
        for event in events:
            if model_id := (event.get("netgpt") or {}).get("model"):
                version = model_id.rsplit("@", 1)[1]
                if version == "central":
                    central[k] += 1
                else:
                    counts[version] = counts.get(version, 0) + 1
        by_version[k] = counts
    return NetnsRun([tally(*k.split("/"), written[k], received) for k in daemons], during, outage_s, rollout_s,
                    served(received), {k: len(v) + summarised[k] for k, v in flows.items()}, by_version, central, up, model,
                    central_alerts, eve_then, exit_codes)  # fmt: skip
