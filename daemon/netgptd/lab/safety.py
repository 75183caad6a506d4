"""What keeps the lab on this machine and bounded: loopback-only targets,
capped durations and rates, and every started process ended by its PID."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from typing import Iterable, Sequence

import structlog

log = structlog.get_logger(__name__)

MAX_DURATION_S = 600.0
MAX_RATE_PPS = 2000  # packets (or requests) per second any lab tool may send
STOP_GRACE_S = 3.0


class LabError(Exception):
    """A lab run that cannot start or go on; the message says why in one line."""


def assert_loopback(addresses: Iterable[str]) -> None:
    """Refuse any address that is not loopback (127.0.0.0/8, ::1)."""
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise LabError(f"lab address {address!r} is not an IP address") from None
        if not ip.is_loopback:
            raise LabError(f"lab address {address} is not a loopback address: refused")


def bounded(value: float, limit: float, what: str) -> float:
    if not 0 < value <= limit:
        raise LabError(f"{what} must be in (0, {limit:g}], got {value:g}")
    return value


class Supervisor:
    """Starts processes in their own process groups and ends every one of
    them (SIGTERM, then SIGKILL) when the lab run ends, however it ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        try:
            proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
        except FileNotFoundError:
            raise LabError(f"{argv[0]} is not installed (run ./setup.sh)") from None
        self.processes.append(proc)
        log.debug("lab_process_started", pid=proc.pid, argv=" ".join(argv))
        return proc

    def run(self, argv: Sequence[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        """Run a client to completion (killed at ``timeout``); output captured."""
        proc = self.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            out, _ = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            self.stop(proc)
        self.processes.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_until(check, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``check()`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
