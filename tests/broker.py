"""A real Mosquitto broker for tests, and a paho subscriber to watch it.

``Mosquitto`` runs Debian's ``/usr/sbin/mosquitto`` on a free 127.0.0.1 port
with its own configuration, persistence and log in a directory of the test.
Persistence is on, so a persistent (``clean_session=False``) QoS 1 session
and its queued messages survive ``stop()`` and ``start()``, which reuses the
port. Tests take the ``mosquitto`` fixture (``from broker import
mosquitto``); tests that need their own listener options (TLS, passwords)
or broker-wide ``config`` (an ``acl_file``: see ``passwords``) make a
``Mosquitto`` themselves. Without mosquitto they are skipped.
"""

from __future__ import annotations

import asyncio
import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"


def require(program: str, package: str = "mosquitto") -> str:
    """The path of ``program``; skips the test where it is not installed."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package {package})")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def passwords(directory: Path, users: dict[str, str]) -> Path:
    """A mosquitto ``password_file`` for ``users`` (name -> password), made with mosquitto_passwd."""
    path = directory / "passwd"
    directory.mkdir(parents=True, exist_ok=True)
    program = require(MOSQUITTO_PASSWD)
    for i, (name, password) in enumerate(users.items()):
        subprocess.run([program, "-b", *(["-c"] if i == 0 else []), str(path), name, password], check=True,
                       capture_output=True)  # fmt: skip
    return path


class Mosquitto:
    """One broker; ``listener_options`` go after its ``listener`` line (TLS files, auth), ``config`` before it
    (broker-wide settings such as ``acl_file``, ``max_queued_messages``). With ``listener_options=None``
    there is no listener line: ``config`` holds the whole configuration, listening on ``port``
    (a shipped configuration file, filled in)."""

    def __init__(self, directory: Path, listener_options: str | None = "allow_anonymous true", scheme: str = "mqtt",
                 config: str = "", port: int | None = None, host: str = "127.0.0.1") -> None:  # fmt: skip
        self.program = require(MOSQUITTO)
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.scheme = host, port or free_port(), scheme
        self.log = directory / "mosquitto.log"
        self.config = directory / "mosquitto.conf"
        # ``user``: as root, mosquitto would switch to its own user, which cannot write here.
        self.config.write_text(
            f"user {getpass.getuser()}\n"
            f"persistence true\npersistence_location {directory}/\n"
            f"log_dest file {self.log}\nlog_type all\n{config}\n"
            + (f"listener {self.port} {self.host}\n{listener_options}\n" if listener_options is not None else "")
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 5.0) -> None:
        """Start (again, on the same port) and wait until the port accepts."""
        self._process = subprocess.Popen([self.program, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.log_text()}")

    def stop(self) -> None:
        """Terminate cleanly (mosquitto writes its persistence file on the way out)."""
        if self._process is None:
            return
        self.resume()
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


class Received(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A paho client on its own thread, subscribed at QoS 1 to ``topic``, keeping what arrives.

    ``client_id`` makes it a persistent session, which the broker keeps (and
    queues for) across its restarts; the client reconnects by itself.
    ``connect`` takes extra ``tls_set`` keywords under ``tls`` and ``username``/``password``.
    """

    def __init__(self, broker: Mosquitto, topic: str, client_id: str = "", **connect: Any) -> None:
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._topic = topic
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id)
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        if "tls" in connect:
            self._client.tls_set(**connect["tls"])
        if "username" in connect:
            self._client.username_pw_set(connect["username"], connect.get("password"))
        self._client.connect(broker.host, broker.port, keepalive=5)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise RuntimeError(f"no SUBACK for {topic} from {broker.url}")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Received(message.topic, message.payload, message.qos, bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 5.0) -> list[Received]:
        """The messages once ``done(messages)`` holds; AssertionError with what came after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.messages), timeout):
                raise AssertionError(f"after {timeout} s, received only {self.messages}")
            return list(self.messages)

    def payloads(self, topic: str) -> list[bytes]:
        with self._changed:
            return [m.payload for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started broker (anonymous, plain MQTT), stopped after the test."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait in a test's event loop until ``condition()`` holds; fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)
