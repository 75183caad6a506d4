"""The MQTT plugin against a real Mosquitto: delivery, outages, will, TLS, and its settings.

The plugin runs inside ``asyncio.run`` as the pipeline would run it; the
subscriber (paho, its own thread) is what an operator's consumer would see.
Blocking calls (broker start/stop, waiting on the subscriber) go through
``asyncio.to_thread`` so the plugin's loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from broker import Mosquitto, Received, Subscriber, mosquitto, passwords, require, until  # noqa: F401

from netgptd import logs
from netgptd.outbox import Outbox
from netgptd.plugin_host import PluginError, PluginHost, SensorContext, check_settings, load_plugin
from netgptd_plugins.mqtt import MqttPlugin

pytestmark = pytest.mark.timeout(30)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "close_timeout": 2.0}


def sensor(state_dir: Path, name: str) -> SensorContext:
    return SensorContext(site="lab", sensor=name, state_dir=state_dir)


def prefix(name: str) -> str:
    return f"netgpt/lab/{name}/"


def alert(n: int) -> dict[str, Any]:
    return {"timestamp": "2024-05-01T12:00:00.000000+0000", "event_type": "alert", "n": n,
            "alert": {"signature": "test", "severity": 2}}  # fmt: skip


def numbers(messages: list[Received], topic: str) -> list[int]:
    return [json.loads(m.payload)["n"] for m in messages if m.topic == topic]


def first_seen(values: list[int]) -> list[int]:
    """QoS 1 is at least once: a message in flight when the link broke comes twice."""
    return list(dict.fromkeys(values))


Check = Callable[[list[Received]], bool]


async def received(subscriber: Subscriber, done: Check, timeout: float = 5.0) -> list[Received]:
    """``subscriber.wait_for`` off the loop, so the plugin keeps running."""
    return await asyncio.to_thread(subscriber.wait_for, done, timeout)


def json_logs() -> io.StringIO:
    """structlog as the daemon configures it, into a buffer (conftest resets it after the test)."""
    stream = io.StringIO()
    logs.configure(stream, level="info")
    return stream


def log_events(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, stream.getvalue().splitlines()) if line["event"] == event]


# --- settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"url": "http://127.0.0.1"}, "url"),
        ({"url": "mqtt://"}, "url"),
        ({"url": "mqtt://host/some/path"}, "url"),
        ({"url": "mqtts://host", "ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"url": "mqtts://host", "ca_file": __file__}, "ca_file"),  # readable, not PEM
        ({"url": "mqtt://host", "ca_file": __file__}, "ca_file"),  # TLS files need mqtts://
        ({"url": "mqtts://host", "cert_file": "/nonexistent/c.pem"}, "cert_file"),
        ({"url": "mqtts://host", "cert_file": __file__}, "cert_file"),
        ({"url": "mqtts://host", "key_file": __file__}, "key_file"),
        ({"username": "u", "password_file": "/nonexistent/pw"}, "password_file"),
        ({"password": "p"}, "password"),
        ({"url": "mqtt://u@host", "username": "v"}, "username"),
        ({"url": "mqtt://u:p@host", "password": "q"}, "password"),
        ({"topic_prefix": "netgpt/{site}/{host}/"}, "topic_prefix"),
        ({"topic_prefix": "netgpt/#/"}, "topic_prefix"),
        ({"topic_prefix": "netgpt/\0/"}, "topic_prefix"),
        ({"topic_prefix": "t" * 2000}, "topic_prefix"),
        ({"keepalive": 100000}, "keepalive"),  # MQTT's keep alive is 16 bits: paho would refuse at every connect
        ({"outbox_max": 0}, "outbox_max"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings: dict[str, Any], setting: str) -> None:
    with pytest.raises(ValueError, match=rf"^{setting}\b"):
        MqttPlugin(**settings)


def test_messages_never_show_the_url_password() -> None:
    with pytest.raises(ValueError) as refused:
        MqttPlugin(url="mqtt://user:s3cret@host:notaport")
    assert "s3cret" not in str(refused.value) and "port" in str(refused.value)


def test_url_gives_tls_default_port_and_credentials() -> None:
    link = MqttPlugin(url="mqtts://sensor%40lab:p%3Ass@broker.example").link
    assert (link.host, link.port) == ("broker.example", 8883)
    assert (link.username, link.password) == ("sensor@lab", "p:ss")
    assert link.tls is not None
    plain = MqttPlugin(url="mqtt://broker.example").link
    assert (plain.port, plain.tls, plain.username) == (1883, None, "")


def test_password_file_is_read_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    assert MqttPlugin(username="u", password_file=str(secret)).link.password == "hunter2"


def test_the_host_checks_types_and_loads_it_by_entry_point() -> None:
    with pytest.raises(PluginError, match=r"\[plugins.mqtt\] keepalive: expected int"):
        check_settings("mqtt", MqttPlugin, {"keepalive": "30"})
    with pytest.raises(PluginError, match=r"\[plugins.mqtt\] url:"):
        load_plugin("mqtt", {"url": "tcp://x"})
    assert isinstance(load_plugin("mqtt", {"publish_flows": True, "backoff_max": 5}), MqttPlugin)


# --- delivery -----------------------------------------------------------------


def test_online_alerts_in_order_then_offline_on_close(mosquitto: Mosquitto, tmp_path: Path) -> None:
    name = "delivery"
    status, alerts = prefix(name) + "status", prefix(name) + "alerts"

    async def run() -> tuple[list[Received], dict[str, Any], list[Received]]:
        plugin = MqttPlugin(url=mosquitto.url, **FAST)
        plugin.netgpt_start(sensor(tmp_path, name))
        await until(lambda: plugin.netgpt_status()["connected"] == 1, what="connected")
        # Subscribing after the plugin said online: the broker hands over the retained message.
        with Subscriber(mosquitto, prefix(name) + "#") as subscriber:
            for n in range(30):
                plugin.netgpt_event(alert(n))
            plugin.netgpt_event({"event_type": "intent", "n": 100})
            plugin.netgpt_event({"event_type": "answer", "n": 101})
            plugin.netgpt_event({"event_type": "trend", "n": 102})
            plugin.netgpt_event({"event_type": "flow", "n": 103})  # publish_flows is off
            plugin.netgpt_event({"event_type": "stats", "n": 104})  # not for MQTT
            got = await received(subscriber, lambda m: len(numbers(m, alerts)) == 30 and len(m) >= 34)
            await until(lambda: plugin.netgpt_status()["published"] == 33, what="all acked")
            state = plugin.netgpt_status()
            await plugin.netgpt_close()
            after_close = await received(subscriber, lambda m: m[-1].topic == status and m[-1].payload == b"offline")
        return got, state, after_close

    got, state, after_close = asyncio.run(run())
    assert (got[0].topic, got[0].payload, got[0].retain) == (status, b"online", True)
    assert numbers(got, alerts) == list(range(30)), "alerts arrive once each, in order"
    assert {m.qos for m in got if m.topic == alerts} == {1}
    others = {m.topic.removeprefix(prefix(name)): (json.loads(m.payload)["n"], m.qos)
              for m in got[1:] if m.topic != alerts}  # fmt: skip
    assert others == {"intents": (100, 1), "answers": (101, 1), "trends": (102, 0)}
    first = next(m for m in got if m.topic == alerts)
    assert first.payload == json.dumps(alert(0), separators=(",", ":")).encode(), "compact JSON, as in eve.json"
    assert state == {"connected": 1, "outbox_depth": 0, "outbox_dropped": 0, "outbox_writable": 1,
                     "outbox_unwritten": 0, "held": 0, "held_dropped": 0, "published": 33, "reconnects": 0}  # fmt: skip
    assert after_close[-1].qos == 1
    with Subscriber(mosquitto, status) as late:
        retained = late.wait_for(lambda m: bool(m))
    assert [(m.payload, m.retain) for m in retained] == [(b"offline", True)]


def test_flows_are_published_when_asked_through_the_plugin_host(mosquitto: Mosquitto, tmp_path: Path) -> None:
    name = "flows"

    async def run() -> tuple[list[Received], PluginHost]:
        host = PluginHost({"mqtt": {"url": mosquitto.url, "publish_flows": True, **FAST}})
        await host.start(sensor(tmp_path, name))
        await until(lambda: host.status()["mqtt"]["connected"] == 1, what="connected")
        with Subscriber(mosquitto, prefix(name) + "flows") as subscriber:
            for n in range(3):
                host.emit({"event_type": "flow", "n": n})
            got = await received(subscriber, lambda m: len(m) == 3)
        await host.aclose()
        return got, host

    got, host = asyncio.run(run())
    assert [(json.loads(m.payload)["n"], m.qos) for m in got] == [(0, 0), (1, 0), (2, 0)]
    assert not host.errors


def test_a_row_leaves_the_outbox_only_once_the_broker_acknowledges_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A frozen broker takes the bytes (the kernel buffers them) but sends no PUBACK."""
    name = "puback"

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        plugin = MqttPlugin(url=mosquitto.url, **FAST)
        plugin.netgpt_start(sensor(tmp_path, name))
        await until(lambda: plugin.netgpt_status()["connected"] == 1, what="connected")
        mosquitto.pause()
        try:
            plugin.netgpt_event(alert(0))
            await asyncio.sleep(0.5)
            frozen = plugin.netgpt_status()
        finally:
            mosquitto.resume()
        await until(lambda: plugin.netgpt_status()["outbox_depth"] == 0, what="acked after resume")
        thawed = plugin.netgpt_status()
        await plugin.netgpt_close()
        return frozen, thawed

    frozen, thawed = asyncio.run(run())
    assert (frozen["connected"], frozen["outbox_depth"], frozen["published"]) == (1, 1, 0)
    assert (thawed["outbox_depth"], thawed["published"]) == (0, 1)


def test_alerts_wait_out_a_broker_restart_and_all_arrive_in_order(mosquitto: Mosquitto, tmp_path: Path) -> None:
    name = "restart"
    alerts = prefix(name) + "alerts"

    async def run() -> tuple[dict[str, Any], list[Received], dict[str, Any]]:
        plugin = MqttPlugin(url=mosquitto.url, **FAST)
        # A persistent session: the broker keeps queueing for it while it reconnects.
        with Subscriber(mosquitto, prefix(name) + "#", client_id="watch-restart") as subscriber:
            plugin.netgpt_start(sensor(tmp_path, name))
            for n in range(10):
                plugin.netgpt_event(alert(n))
            await received(subscriber, lambda m: len(set(numbers(m, alerts))) == 10)

            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: plugin.netgpt_status()["connected"] == 0, what="disconnect noticed")
            for n in range(10, 25):
                plugin.netgpt_event(alert(n))
            plugin.netgpt_event({"event_type": "trend", "n": 999})  # live only: not kept for later
            await asyncio.sleep(0.3)  # several reconnect attempts fail meanwhile
            down = plugin.netgpt_status()

            await asyncio.to_thread(mosquitto.start)
            got = await received(subscriber, lambda m: len(set(numbers(m, alerts))) == 25)
            await until(lambda: plugin.netgpt_status()["outbox_depth"] == 0, what="outbox drained")
            up = plugin.netgpt_status()
            await plugin.netgpt_close()
        return down, got, up

    down, got, up = asyncio.run(run())
    assert (down["connected"], down["outbox_depth"]) == (0, 15)
    assert first_seen(numbers(got, alerts)) == list(range(25)), "none missing, in order"
    assert {m.qos for m in got if m.topic == alerts} == {1}
    assert not [m for m in got if m.topic.endswith("/trends")]
    assert [m.payload for m in got if m.topic.endswith("/status")][-1] == b"online", "said again on reconnecting"
    assert (up["connected"], up["reconnects"], up["outbox_dropped"]) == (1, 1, 0)


def test_broker_publishes_the_will_when_the_daemon_is_killed(mosquitto: Mosquitto, tmp_path: Path) -> None:
    name = "doomed"
    child = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from netgptd.plugin_host import SensorContext\n"
        "from netgptd_plugins.mqtt import MqttPlugin\n"
        "async def main():\n"
        "    plugin = MqttPlugin(url=sys.argv[1])\n"
        "    plugin.netgpt_start(SensorContext(site='lab', sensor=sys.argv[2], state_dir=Path(sys.argv[3])))\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    status = prefix(name) + "status"
    with Subscriber(mosquitto, status) as subscriber:
        daemon = subprocess.Popen([sys.executable, "-c", child, mosquitto.url, name, str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            subscriber.wait_for(lambda m: [x.payload for x in m] == [b"online"], timeout=10)
        finally:
            daemon.send_signal(signal.SIGKILL)
            _, stderr = daemon.communicate(timeout=5)
        got = subscriber.wait_for(lambda m: len(m) == 2)
    assert daemon.returncode == -signal.SIGKILL, stderr.decode()
    assert [(m.payload, m.qos) for m in got] == [(b"online", 1), (b"offline", 1)]
    with Subscriber(mosquitto, status) as late:
        assert [(m.payload, m.retain) for m in late.wait_for(lambda m: bool(m))] == [(b"offline", True)]


def test_unreachable_broker_one_warning_alerts_kept_and_sent_by_the_next_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")  # configured, its port free, not started yet
    name = "offline"
    stream = json_logs()

    async def first_run() -> dict[str, Any]:
        plugin = MqttPlugin(url=broker.url, **(FAST | {"close_timeout": 0.5}))
        plugin.netgpt_start(sensor(tmp_path, name))
        for n in range(3):
            plugin.netgpt_event(alert(n))
        await asyncio.sleep(0.6)  # a handful of attempts at 0.05 .. 0.2 s
        state = plugin.netgpt_status()
        await plugin.netgpt_close()
        return state

    async def second_run(subscriber: Subscriber) -> list[Received]:
        plugin = MqttPlugin(url=broker.url, **FAST)
        plugin.netgpt_start(sensor(tmp_path, name))
        got = await received(subscriber, lambda m: len(set(numbers(m, prefix(name) + "alerts"))) == 3)
        await plugin.netgpt_close()
        return got

    state = asyncio.run(first_run())
    assert (state["connected"], state["outbox_depth"]) == (0, 3)
    warnings = [e for e in log_events(stream, "mqtt_disconnected") if e["level"] == "warning"]
    assert len(warnings) == 1, stream.getvalue()
    assert warnings[0]["broker"] == f"127.0.0.1:{broker.port}"
    assert "refused" in warnings[0]["error"].lower() and 0 < warnings[0]["retry_in"] <= 0.2
    assert log_events(stream, "mqtt_closed")[0]["outbox_depth"] == 3
    assert "Traceback" not in stream.getvalue() + capfd.readouterr().err
    left = Outbox(tmp_path / "mqtt-outbox.sqlite3", 10)
    assert [json.loads(i.payload)["n"] for i in left.peek(10)] == [0, 1, 2]
    left.close()

    broker.start()
    try:
        with Subscriber(broker, prefix(name) + "#") as subscriber:
            got = asyncio.run(second_run(subscriber))
    finally:
        broker.stop()
    assert first_seen(numbers(got, prefix(name) + "alerts")) == [0, 1, 2]


# --- TLS ----------------------------------------------------------------------


def openssl(*args: str | Path) -> None:
    subprocess.run([require("openssl", "openssl"), *map(str, args)], check=True, capture_output=True)


def certificate(folder: Path, name: str, subject: str, extension: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A P-256 key and a certificate signed by ``ca``: (cert, key)."""
    key, csr, cert, ext = (folder / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(extension + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", csr, "-subj", subject)  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "1",
            "-out", cert, "-extfile", ext)  # fmt: skip
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = (folder / "ca.pem", folder / "ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-keyout", ca[1], "-out", ca[0], "-subj", "/CN=netgptd test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    server_ext = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    server = certificate(folder, "server", "/CN=127.0.0.1", server_ext, ca)
    client = certificate(folder, "client", "/CN=netgptd sensor", "extendedKeyUsage=clientAuth", ca)
    return {"ca": ca[0], "server_cert": server[0], "server_key": server[1], "cert": client[0], "key": client[1]}


def tls_broker(folder: Path, pki: dict[str, Path], auth: str) -> Mosquitto:
    options = (f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
               f"require_certificate true\n{auth}")  # fmt: skip
    broker = Mosquitto(folder, options, scheme="mqtts")
    broker.start()
    return broker


def tls_settings(pki: dict[str, Path]) -> dict[str, Any]:
    return {"ca_file": str(pki["ca"]), "cert_file": str(pki["cert"]), "key_file": str(pki["key"])}


def subscriber_tls(pki: dict[str, Path]) -> dict[str, str]:
    return {"ca_certs": str(pki["ca"]), "certfile": str(pki["cert"]), "keyfile": str(pki["key"])}


async def deliver_one(plugin: MqttPlugin, state_dir: Path, name: str, subscriber: Subscriber) -> list[Received]:
    plugin.netgpt_start(sensor(state_dir, name))
    plugin.netgpt_event(alert(7))
    got = await received(subscriber, lambda m: bool(numbers(m, prefix(name) + "alerts")))
    await plugin.netgpt_close()
    return got


async def refused(plugin: MqttPlugin, state_dir: Path, name: str, stream: io.StringIO) -> dict[str, Any]:
    """Start a plugin the broker turns away, until its warning; its status then."""
    plugin.netgpt_start(sensor(state_dir, name))
    plugin.netgpt_event(alert(8))
    await until(lambda: bool(log_events(stream, "mqtt_disconnected")), what="a warning")
    state = plugin.netgpt_status()
    await plugin.netgpt_close()
    return state


def test_tls_with_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    broker = tls_broker(tmp_path / "mosquitto", pki, "allow_anonymous true")
    stream = json_logs()
    try:
        with Subscriber(broker, "netgpt/#", tls=subscriber_tls(pki)) as subscriber:
            plugin = MqttPlugin(url=broker.url, **tls_settings(pki), **FAST)
            got = asyncio.run(deliver_one(plugin, tmp_path / "a", "tls", subscriber))

            # Without ca_file, the system's CAs: they do not vouch for this broker.
            system_cas = MqttPlugin(url=broker.url, cert_file=str(pki["cert"]), key_file=str(pki["key"]),
                                    **(FAST | {"close_timeout": 0.3}))  # fmt: skip
            state = asyncio.run(refused(system_cas, tmp_path / "b", "tls-unverified", stream))
    finally:
        broker.stop()
    assert numbers(got, "netgpt/lab/tls/alerts") == [7]
    assert (state["connected"], state["outbox_depth"]) == (0, 1)
    (warning,) = [e for e in log_events(stream, "mqtt_disconnected") if e["level"] == "warning"]
    assert "certificate verify failed" in warning["error"], warning
    assert "Traceback" not in stream.getvalue()


def test_tls_with_username_and_password(tmp_path: Path, pki: dict[str, Path]) -> None:
    passwd = passwords(tmp_path, {"sensor": "s3cret"})
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    broker = tls_broker(tmp_path / "mosquitto", pki, f"allow_anonymous false\npassword_file {passwd}")
    stream = json_logs()
    try:
        with Subscriber(broker, "netgpt/#", tls=subscriber_tls(pki), username="sensor", password="s3cret") as sub:
            plugin = MqttPlugin(url=broker.url, username="sensor", password_file=str(secret),
                                **tls_settings(pki), **FAST)  # fmt: skip
            got = asyncio.run(deliver_one(plugin, tmp_path / "a", "tls-auth", sub))

            wrong_url = broker.url.replace("mqtts://", "mqtts://sensor:wrong@")
            wrong = MqttPlugin(url=wrong_url, **tls_settings(pki), **(FAST | {"close_timeout": 0.3}))
            state = asyncio.run(refused(wrong, tmp_path / "b", "tls-wrong", stream))
    finally:
        broker.stop()
    assert numbers(got, "netgpt/lab/tls-auth/alerts") == [7]
    assert (state["connected"], state["outbox_depth"]) == (0, 1)
    (warning,) = [e for e in log_events(stream, "mqtt_disconnected") if e["level"] == "warning"]
    assert "not authori" in warning["error"].lower() or "bad user name" in warning["error"].lower(), warning


# --- health -------------------------------------------------------------------


def test_a_broker_away_is_not_dead_but_a_stalled_delivery_is(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Away: the outbox holds the alerts. Frozen (SIGSTOP) while connected: nothing acknowledged for stall_after."""
    name = "stall"

    async def run() -> tuple[str | None, str | None, str | None, str | None]:
        plugin = MqttPlugin(url=mosquitto.url, stall_after=0.5, **FAST)
        plugin.netgpt_start(sensor(tmp_path, name))
        await until(lambda: plugin.netgpt_status()["connected"] == 1, what="connected")
        await asyncio.sleep(0.6)  # idle longer than stall_after: nothing waits, so nothing stalls
        plugin.netgpt_event(alert(0))
        idle_then_busy = plugin.netgpt_health()
        await until(lambda: plugin.netgpt_status()["published"] == 1, what="first acked")
        mosquitto.pause()
        try:
            plugin.netgpt_event(alert(1))
            await asyncio.sleep(0.8)
            frozen = plugin.netgpt_health()
        finally:
            mosquitto.resume()
        await until(lambda: plugin.netgpt_status()["outbox_depth"] == 0, what="acked after resume")
        thawed = plugin.netgpt_health()
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: plugin.netgpt_status()["connected"] == 0, what="disconnect noticed")
        plugin.netgpt_event(alert(2))
        await asyncio.sleep(0.8)
        away = plugin.netgpt_health()
        await plugin.netgpt_close()
        return idle_then_busy, frozen, thawed, away

    idle_then_busy, frozen, thawed, away = asyncio.run(run())
    assert idle_then_busy is None
    assert frozen is not None and frozen.startswith(f"connected to 127.0.0.1:{mosquitto.port} with 1 messages waiting")
    assert thawed is None
    assert away is None


def test_a_delivery_that_ended_with_an_error_is_dead(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The outbox closed under the plugin (a fault made in process: a broken database cannot be made to order)."""
    name = "crash"

    async def run() -> tuple[str | None, dict[str, Any]]:
        plugin = MqttPlugin(url=mosquitto.url, **FAST)
        plugin.netgpt_start(sensor(tmp_path, name))
        await until(lambda: plugin.netgpt_status()["connected"] == 1, what="connected")
        assert plugin.netgpt_health() is None
        assert plugin._outbox is not None
        plugin._outbox.close()
        plugin.netgpt_event(alert(0))
        await until(lambda: plugin.netgpt_health() is not None, what="dead")
        return plugin.netgpt_health(), plugin.netgpt_status()

    reason, state = asyncio.run(run())
    assert reason == "delivery ended: OutboxError: Cannot operate on a closed database."
    assert (state["outbox_writable"], state["held"]) == (0, 1), "the alert the outbox refused is held"


def test_stall_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^stall_after: must be positive"):
        MqttPlugin(stall_after=0)
