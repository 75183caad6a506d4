"""sd_notify client against real AF_UNIX datagram sockets, as systemd would listen."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netgptd.sdnotify import Notifier


def _bind(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sun_path holds 108 bytes; pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="sdn-") as name:
        yield Path(name)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its address as $NOTIFY_SOCKET would spell it."""
    address = str(short_dir / "notify") if request.param == "path" else f"@netgptd-test-{uuid.uuid4().hex}"
    sock = _bind(address)
    yield sock, address
    sock.close()


def test_messages_arrive_as_sent(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.enabled

    assert notifier.ready("capturing on eth0")
    assert sock.recv(4096) == b"READY=1\nSTATUS=capturing on eth0"
    assert notifier.status("reloading model v3")
    assert sock.recv(4096) == b"STATUS=reloading model v3"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"

    before = time.monotonic_ns() // 1000
    assert notifier.reloading()
    after = time.monotonic_ns() // 1000
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after

    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert (notifier.sent, notifier.failures, notifier.last_error) == (5, 0, None)
    notifier.close()


def test_status_stays_one_assignment(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier(address)
    assert notifier.ready("line one\nline two")
    assert sock.recv(4096) == b"READY=1\nSTATUS=line one line two"
    notifier.close()


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch, listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.watchdog_interval() == 15.0
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<other>"}, None),
        ({"WATCHDOG_USEC": "3000"}, 0.0015),
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["usec", "own-pid", "other-pid", "short", "unset", "zero", "garbage"],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pids = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    environ = {key: pids.get(value, value) for key, value in env.items()}
    assert Notifier.from_env({"NOTIFY_SOCKET": "@unused", **environ}).watchdog_interval() == expected


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}], ids=["unset", "empty"])
def test_without_service_manager_nothing_happens(environ: dict[str, str]) -> None:
    notifier = Notifier.from_env(environ)
    assert not notifier.enabled
    assert not notifier.ready("up")
    assert not notifier.status("x")
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None
    assert (notifier.sent, notifier.failures, notifier.last_error) == (0, 0, None)


def test_vanished_socket_path_is_counted_not_raised(short_dir: Path) -> None:
    address = str(short_dir / "notify")
    sock = _bind(address)
    notifier = Notifier(address)
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"

    sock.close()
    os.unlink(address)
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.failures == 2
    assert isinstance(notifier.last_error, FileNotFoundError)

    # The service manager came back (e.g. after daemon-reexec): sending works again.
    sock = _bind(address)
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert (notifier.sent, notifier.failures) == (2, 2)
    sock.close()
    notifier.close()


def test_closed_socket_is_counted_not_raised(short_dir: Path) -> None:
    address = str(short_dir / "notify")
    _bind(address).close()  # the file stays, nobody listens
    notifier = Notifier(address)
    assert not notifier.ready()
    assert notifier.failures == 1
    assert isinstance(notifier.last_error, ConnectionRefusedError)
    notifier.close()


def test_abstract_name_without_listener_is_counted_not_raised() -> None:
    notifier = Notifier(f"@netgptd-test-{uuid.uuid4().hex}")
    assert not notifier.watchdog()
    assert notifier.failures == 1
    assert isinstance(notifier.last_error, ConnectionRefusedError)
    notifier.close()


def test_unsupported_address_is_counted_not_raised() -> None:
    notifier = Notifier("vsock:2:1234")
    assert notifier.enabled
    assert not notifier.ready()
    assert notifier.failures == 1
    assert isinstance(notifier.last_error, OSError)
    notifier.close()
