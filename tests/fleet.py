"""A netgptd fleet on this machine, from real parts, for tests/test_fleet_mqtt.py and bench/fleet_outage.py.

Site mosquitto brokers bridged to a central mosquitto, each from the shipped
configuration (``deploy/mosquitto/site-bridge.conf``, ``central.conf`` and
``central.acl``, filled in as ``envsubst`` would), over TLS with client
certificates from a throw-away CA: the bridges' common names are their
sites, the collector's is ``collector``, as ``central.acl`` expects. The
sensors are ``netgptd run`` replaying a capture, each with its own site and
sensor name, publishing to its site's broker. A collector at the centre (a
persistent QoS 1 session on ``netgpt/#``) keeps what arrives; ``tally``
sets it against what each sensor wrote to its EVE file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import string
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import paho.mqtt.publish as paho_publish

from broker import Mosquitto, Received, Subscriber, free_port, require
from test_daemon import Daemon, canonical
from test_mqtt_plugin import certificate, openssl

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "mosquitto"
COLLECTOR = "collector"  # the collector's certificate name: a user of central.acl


def render(template: Path, **values: object) -> str:
    """The shipped configuration with its ``${NAME}`` values filled in; KeyError for one not given."""
    return string.Template(template.read_text(encoding="utf-8")).substitute({k: str(v) for k, v in values.items()})


@dataclass(frozen=True)
class Pki:
    """A CA, the central broker's server certificate (for 127.0.0.1) and client certificates by common name."""

    ca: Path
    server: tuple[Path, Path]
    clients: dict[str, tuple[Path, Path]]

    def client_tls(self, name: str) -> dict[str, str]:
        """paho's ``tls_set`` keywords for the client certificate ``name``."""
        cert, key = self.clients[name]
        return {"ca_certs": str(self.ca), "certfile": str(cert), "keyfile": str(key)}


def make_pki(folder: Path, names: Iterable[str]) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = (folder / "ca.pem", folder / "ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-keyout", ca[1], "-out", ca[0], "-subj", "/CN=netgptd fleet test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    server = certificate(folder, "central", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\n"
                         "extendedKeyUsage=serverAuth", ca)  # fmt: skip
    clients = {n: certificate(folder, n, f"/CN={n}", "extendedKeyUsage=clientAuth", ca) for n in names}
    return Pki(ca[0], server, clients)


def central_broker(folder: Path, pki: Pki) -> Mosquitto:
    """The central broker from central.conf and central.acl (not started)."""
    folder.mkdir(parents=True, exist_ok=True)
    acl = folder / "central.acl"
    acl.write_text((DEPLOY / "central.acl").read_text(encoding="utf-8"), encoding="utf-8")
    port = free_port()
    config = render(DEPLOY / "central.conf", PORT=port, CA=pki.ca, CERT=pki.server[0], KEY=pki.server[1], ACL=acl)
    return Mosquitto(folder, None, scheme="mqtts", config=config, port=port)


def site_broker(folder: Path, site: str, central: Mosquitto, pki: Pki, host: str = "127.0.0.1") -> Mosquitto:
    """A site broker (anonymous sensors on ``host``) with site-bridge.conf to ``central`` (not started)."""
    cert, key = pki.clients[site]
    bridge = render(DEPLOY / "site-bridge.conf", SITE=site, CENTRAL_HOST=central.host, CENTRAL_PORT=central.port,
                    BRIDGE_CA=pki.ca, BRIDGE_CERT=cert, BRIDGE_KEY=key)  # fmt: skip
    return Mosquitto(folder, "allow_anonymous true\n" + bridge, host=host)


def collector(central: Mosquitto, pki: Pki, client_id: str = "fleet-collector") -> Subscriber:
    """A persistent QoS 1 session on ``netgpt/#`` at the central broker: it misses nothing across a restart."""
    return Subscriber(central, "netgpt/#", client_id=client_id, tls=pki.client_tls(COLLECTOR))


def sensor(folder: Path, site: str, name: str, broker: Mosquitto, capture: Path, speed: float,
           *extra: str, metrics: str = "", wrap: Sequence[str] = ()) -> Daemon:  # fmt: skip
    """``netgptd run`` replaying ``capture`` at ``speed``, publishing to ``broker`` as ``site``/``name``, its
    metrics on ``metrics`` (default: a free port on loopback), run by ``wrap`` (``ip netns exec NS``) if given."""
    return Daemon(folder, "--source", f"pcap:{capture}", "--replay-speed", str(speed), "--mqtt", broker.url,
                  "--site", site, "--sensor", name, "--metrics", metrics or f"127.0.0.1:{free_port()}",
                  *extra, wrap=wrap)  # fmt: skip


def quiet_then(capture: Path, lead_s: float, out: Path) -> Path:
    """``capture`` after ``lead_s`` seconds of quiet (its first packet, moved that much earlier, alone): a sensor
    replaying it at speed 1 is up and online before the capture's own traffic, and its alerts, begin."""
    require("editcap", "wireshark-common")
    first, early = out.with_suffix(".first.pcapng"), out.with_suffix(".early.pcapng")
    subprocess.run(["editcap", "-r", str(capture), str(first), "1"], check=True, capture_output=True)
    subprocess.run(["editcap", "-t", str(-lead_s), str(first), str(early)], check=True, capture_output=True)
    subprocess.run(["mergecap", "-a", "-w", str(out), str(early), str(capture)], check=True, capture_output=True)
    return out


def topic(site: str, name: str, kind: str) -> str:
    return f"netgpt/{site}/{name}/{kind}"


@dataclass(frozen=True)
class Delivery:
    """One sensor's alerts: written to its EVE file, and how many of those arrived centrally, how often."""

    site: str
    sensor: str
    written: int
    delivered: int  # written alerts that arrived at least once
    duplicates: int  # copies beyond the first (QoS 1 is at least once)
    strays: int  # alerts that arrived but are in no EVE line (there should be none)

    @property
    def ratio(self) -> float:
        return self.delivered / self.written if self.written else 1.0


def tally(site: str, name: str, written: list[dict[str, Any]], received: list[Received]) -> Delivery:
    """Each EVE alert (as many times as EVE has it) against the alert messages on its sensor's topic."""
    want = Counter(canonical(a) for a in written)
    alerts = topic(site, name, "alerts")
    got = Counter(canonical(json.loads(r.payload)) for r in received if r.topic == alerts)
    delivered = sum(min(n, got[k]) for k, n in want.items())
    duplicates = sum(max(0, got[k] - n) for k, n in want.items())
    strays = sum(n for k, n in got.items() if k not in want)
    return Delivery(site, name, sum(want.values()), delivered, duplicates, strays)


def statuses(messages: list[Received]) -> dict[str, bytes]:
    """The last status of each ``site/sensor`` among ``messages``."""
    last = {}
    for m in messages:
        parts = m.topic.split("/")
        if len(parts) == 4 and parts[3] == "status":
            last[f"{parts[1]}/{parts[2]}"] = m.payload
    return last


@dataclass
class OutageRun:
    """What ``outage_run`` saw: per sensor, its delivery and the alerts it wrote while the centre was down."""

    deliveries: list[Delivery]
    written_during_outage: dict[str, int]  # site/sensor -> alerts its EVE gained while the central broker was down
    outage_s: float  # measured: from the stop to the central broker listening again
    retained_online: dict[str, bytes]  # what a new central subscriber got before the outage
    retained_after_outage: dict[str, bytes]  # ... right after it (the central broker's persistence)
    retained_at_end: dict[str, bytes]  # ... at the end: offline for all (closed, or the killed one's will)
    killed: str  # site/sensor killed with SIGKILL at the end
    killed_status: int  # its exit status
    bridge_states: dict[str, bytes]  # netgpt/<site>/_bridge/state at the end, per site


def stop_group(process: subprocess.Popen, resume: bool = False) -> None:
    """SIGTERM a process group started with ``start_new_session`` (SIGCONT first where it may be stopped),
    SIGKILL if it is not gone in 30 s."""
    with contextlib.suppress(ProcessLookupError):
        if resume:
            os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def retained_statuses(central: Mosquitto, pki: Pki, expected: int) -> dict[str, bytes]:
    """The retained status of each sensor, as a new central subscriber gets it."""
    with Subscriber(central, "netgpt/+/+/status", tls=pki.client_tls(COLLECTOR)) as late:
        try:
            got = late.wait_for(lambda m: len(statuses(m)) >= expected, timeout=5)
        except AssertionError:
            got = late.messages
    return statuses([m for m in got if m.retain])


def eve_alerts(daemon: Daemon) -> int:
    """The alerts in a running sensor's EVE file so far (a line being written is not one yet)."""
    text = daemon.eve.read_text(encoding="utf-8") if daemon.eve.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    return sum(json.loads(line)["event_type"] == "alert" for line in complete.splitlines())


@contextlib.contextmanager
def brokers_of(folder: Path, sites: list[str], users: tuple[str, ...] = (),
               hosts: dict[str, str] | None = None) -> Iterator[tuple[Pki, Mosquitto, dict[str, Mosquitto]]]:
    """A started central broker and a started, bridged broker per site (listening on ``hosts[site]``, default
    loopback; and certificates for the sites, the collector and ``users``); stopped on the way out. Yields
    once every bridge says it is connected."""
    pki = make_pki(folder / "pki", [*sites, COLLECTOR, *users])
    central = central_broker(folder / "central", pki)
    brokers = {site: site_broker(folder / f"site-{site}", site, central, pki, (hosts or {}).get(site, "127.0.0.1"))
               for site in sites}  # fmt: skip
    central.start()
    try:
        for broker in brokers.values():
            broker.start()
        with Subscriber(central, "netgpt/+/_bridge/state", tls=pki.client_tls(COLLECTOR)) as states:
            states.wait_for(lambda m: {r.topic.split("/")[1] for r in m if r.payload == b"1"} >= set(sites), 10)
        yield pki, central, brokers
    finally:
        for broker in brokers.values():
            broker.stop()
        central.stop()


def publish(broker: Mosquitto, topic: str, payload: bytes, tls: dict[str, str] | None = None) -> None:
    """One QoS 1 message, as a client of ``broker`` (``tls``: ``Pki.client_tls`` of the client's certificate)."""
    paho_publish.single(topic, payload, qos=1, hostname=broker.host, port=broker.port, tls=tls)


def outage_run(folder: Path, capture: Path, sites: dict[str, list[str]], speed: float, outage: float,
               log: Callable[[str], None] = lambda _: None) -> OutageRun:  # fmt: skip
    """Sites' sensors replay ``capture`` (see ``quiet_then``) at ``speed`` through their site brokers to the
    centre; as soon as all are online centrally, the central broker stops for ``outage`` seconds, and longer
    if need be (up to a minute more) until every sensor has written alerts meanwhile. One more sensor (the
    last site's ``doomed``, replaying at a tenth of ``speed``) is killed with SIGKILL at the end, once the
    others are done and their alerts are in: its will must reach the centre."""
    doomed_name = f"{list(sites)[-1]}/doomed"
    names = [f"{site}/{name}" for site, sensors in sites.items() for name in sensors]
    daemons: dict[str, Daemon] = {}
    with brokers_of(folder, list(sites)) as (pki, central, brokers), collector(central, pki) as inbox:
        try:
            log(f"bridges of {len(sites)} sites connected; starting {len(names)} sensors and {doomed_name}")
            for key in [*names, doomed_name]:
                site, name = key.split("/")
                slow = speed / 10 if key == doomed_name else speed
                daemons[key] = sensor(folder / "sensors" / site / name, site, name, brokers[site], capture, slow)
            wait_until(lambda: all(statuses(inbox.messages).get(k) == b"online" for k in daemons), 60,
                       "every sensor online at the centre")  # fmt: skip
            online = retained_statuses(central, pki, len(daemons))
            before = {k: eve_alerts(d) for k, d in daemons.items()}
            log(f"all online; stopping the central broker for {outage:.0f} s")
            stopped = time.monotonic()
            central.stop()
            time.sleep(outage)
            with contextlib.suppress(AssertionError):  # written_during_outage shows it
                wait_until(lambda: all(eve_alerts(daemons[k]) > before[k] for k in names), 60,
                           "alerts from every sensor during the outage")  # fmt: skip
            central.start()
            outage_s = time.monotonic() - stopped
            during = {k: eve_alerts(d) - before[k] for k, d in daemons.items()}
            log(f"central broker back after {outage_s:.1f} s; alerts written meanwhile: {sum(during.values())}")
            after = retained_statuses(central, pki, len(daemons))
            for key in names:
                daemons[key].wait(120)
            written = {k: daemons[k].events("alert") for k in names}
            wanted = {k: len(v) for k, v in written.items()}

            def all_in() -> bool:
                return all(tally(*k.split("/"), written[k], inbox.messages).delivered == wanted[k] for k in names)

            with contextlib.suppress(AssertionError):  # the tally says what is missing
                wait_until(all_in, 60, "every alert at the centre")
            received = list(inbox.messages)
            doomed = daemons[doomed_name]
            doomed.kill()
            with contextlib.suppress(AssertionError):  # retained_at_end shows it
                wait_until(lambda: statuses(inbox.messages).get(doomed_name) == b"offline", 15,
                           "the killed sensor's will at the centre")  # fmt: skip
            end = retained_statuses(central, pki, len(daemons))
            bridges = {s: m.payload for m in inbox.messages for s in sites if m.topic == f"netgpt/{s}/_bridge/state"}
        finally:
            for daemon in daemons.values():
                daemon.kill()
    deliveries = [tally(*k.split("/"), written[k], received) for k in names]
    return OutageRun(deliveries, during, outage_s, online, after, end, doomed_name, doomed.process.returncode,
                     bridges)  # fmt: skip


# -- model rollout (tests/test_rollout.py, bench/fleet_netns.py) -------------------------------------------------


@dataclass(frozen=True)
class RolloutKeys:
    """An Ed25519 key pair that signs rollouts, and another that the sensors do not trust."""

    private: Path
    public: Path
    stranger: Path  # a private key of nobody the sensors know


def rollout_keys(folder: Path) -> RolloutKeys:
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for name in ("rollout", "stranger"):
        key = folder / f"{name}.key"
        openssl("genpkey", "-algorithm", "ed25519", "-out", key)
        keys.append(key)
    public = folder / "rollout.pub"
    openssl("pkey", "-in", keys[0], "-pubout", "-out", public)
    return RolloutKeys(keys[0], public, keys[1])


def bundle_version(folder: Path, version: str) -> Path:
    """The shipped bundle as a new release ``version`` (its manifest's version changed; the same weights)."""
    from netgptd.model.bundle import DEFAULT_BUNDLE, MANIFEST_FILE

    target = folder / f"bundle-{version}"
    shutil.copytree(DEFAULT_BUNDLE, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
    (target / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": version}, indent=2), encoding="utf-8")
    return target


def rollout_config(folder: Path, public_key: Path | None, broker: Mosquitto, more: str = "") -> Path:
    """A configuration file that turns the rollout plugin on (none without ``public_key``), with ``more`` TOML
    (the rest comes from ``sensor``'s flags)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "netgptd.toml"
    rollout = f'[plugins.rollout]\npublic_key = "{public_key}"\nurl = "{broker.url}"\n' if public_key else ""
    config.write_text(f"[stats]\ninterval = 0.5\n{rollout}{more}", encoding="utf-8")
    return config


def served(messages: list[Received]) -> dict[str, dict[str, Any]]:
    """The last rollout report (``<prefix>model``) of each ``site/sensor`` among ``messages``."""
    last = {}
    for m in messages:
        parts = m.topic.split("/")
        if len(parts) == 4 and parts[3] == "model":
            last[f"{parts[1]}/{parts[2]}"] = json.loads(m.payload)
    return last
