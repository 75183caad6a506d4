"""A dependency-free sd_notify(3) client for ``Type=notify`` units.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET``:
a file-system path, or a name in the abstract namespace when it starts with
``@``. Each message is one AF_UNIX datagram of newline-separated
``KEY=VALUE`` assignments. Outside systemd the variable is unset and every
call does nothing, so the daemon runs the same from a shell or in tests.

Telling systemd about the daemon is never worth stopping the daemon for: a
failed send is counted (``failures``, ``last_error``) and swallowed. The
watchdog is the one place where a lost message matters, and there systemd
itself notices the silence and restarts the unit.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to the service manager, or nothing when there is none."""

    def __init__(
        self,
        address: str | None,
        watchdog_usec: int | None = None,
        timeout: float = 1.0,
    ) -> None:
        """``address`` as in ``$NOTIFY_SOCKET``; ``watchdog_usec`` already checked
        against ``$WATCHDOG_PID`` (see :meth:`from_env`).

        ``timeout`` bounds a send: a wedged service manager must not stall the
        event loop that also carries the packets.
        """
        self.address = address or None
        self._watchdog_usec = watchdog_usec
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failures = 0
        self.last_error: OSError | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        The watchdog settings are inherited by child processes too, so they
        count only when ``WATCHDOG_PID`` is unset or names this process (as in
        sd_watchdog_enabled(3)).
        """
        env = os.environ if environ is None else environ
        usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if not pid or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", ""))
            except ValueError:
                usec = None
            if usec is not None and usec <= 0:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between :meth:`watchdog` pings, or None when no watchdog is set.

        Half the watchdog timeout, the margin sd_watchdog_enabled(3) recommends.
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(*self._status(text))

    def reloading(self) -> bool:
        """A reload has begun; :meth:`ready` ends it.

        ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, as :func:`time.monotonic_ns` reads
        on Linux) lets newer systemd tell this reload from an earlier one.
        """
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """Shutdown has begun (the flush that follows may take a while)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Keep-alive ping; send it every :meth:`watchdog_interval` seconds."""
        return self.notify("WATCHDOG=1")

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one datagram.

        True when sent; False when there is no service manager or the send
        failed (then counted in ``failures`` and kept in ``last_error``).
        """
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                sock = self._socket()
                sock.sendto(message, self._target())
            except OSError as exc:
                self.failures += 1
                self.last_error = exc
                return False
            self.sent += 1
            return True

    def close(self) -> None:
        """Release the socket; a later send opens a new one."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(self._timeout)
            self._sock = sock
        return self._sock

    def _target(self) -> bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + os.fsencode(self.address[1:])
        if self.address.startswith("/"):
            return os.fsencode(self.address)
        # e.g. systemd 253's "vsock:CID:PORT": not spoken here, so counted as a failure.
        raise OSError(errno.EAFNOSUPPORT, f"unsupported NOTIFY_SOCKET address {self.address!r}")

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        # A newline would end the assignment and start a bogus one.
        return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)
