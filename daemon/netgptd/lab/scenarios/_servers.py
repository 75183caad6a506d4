"""Helpers the scenarios share: Python servers in daemon threads (socketserver,
asyncio, pyftpdlib), external servers logging into the workdir, checked tool
runs, the server's port (its protocol's or another), folders a server's own
user owns, and a source address for clients that cannot bind one."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import random
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Literal, TypeVar

import structlog

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError, wait_until
from netgptd.lab.scenario import LabContext, scenario

if TYPE_CHECKING:
    from pyftpdlib.servers import FTPServer

log = structlog.get_logger(__name__)

T = TypeVar("T")
S = TypeVar("S", bound=socketserver.BaseServer)


def serve_in_thread(server: S) -> S:
    """Run ``server.serve_forever()`` in a daemon thread; end it with
    ``shutdown()`` and ``server_close()``."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietErrors:
    """For socketserver servers: log a client hanging up mid-exchange (a
    readiness probe does so on purpose) at debug level, not as a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("lab_server_client_error", client=client_address, error=repr(sys.exc_info()[1]))


class QuietTCPServer(QuietErrors, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class LoopThread:
    """An asyncio event loop in a daemon thread, for asyncio servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextmanager
def ftp_serving(server: FTPServer, poll_s: float = 0.05) -> Iterator[None]:
    """Poll a pyftpdlib server's IO loop in a daemon thread while the block
    runs, then close it. pyftpdlib's per-session log, which it would send to
    stderr when no handler is set, is kept quiet."""
    ftp_log = logging.getLogger("pyftpdlib")
    if not ftp_log.handlers:
        ftp_log.addHandler(logging.NullHandler())
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            server.ioloop.loop(timeout=poll_s, blocking=False)
        server.close_all()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


class InetdServer(QuietTCPServer):
    """inetd for one service: accepts, logs each client's (ip, port) in
    ``peers`` (an accept log, for exact labels), and runs ``argv`` (a server
    in inetd mode: telnetd, git daemon --inetd, rsync --daemon) with the
    connection as its standard input and output until it exits."""

    def __init__(self, address: tuple[str, int], ctx: LabContext, argv: Sequence[str]) -> None:
        self.ctx, self.argv, self.peers = ctx, list(argv), []
        super().__init__(address, _HandOff)


class _HandOff(socketserver.BaseRequestHandler):
    server: InetdServer

    def handle(self) -> None:
        self.server.peers.append(self.client_address)
        fd = self.request.fileno()
        # Wait: socketserver shuts the connection down when handle() returns.
        self.server.ctx.supervisor.start(self.server.argv, stdin=fd, stdout=fd).wait()


def well_known_port(ctx: LabContext, ip: str, port: int, kinds: Sequence[int] = (socket.SOCK_STREAM,)) -> int:
    """``port`` where it is free on ``ip`` for every socket kind (the scenario
    owns ``ip``, so it is unless something listens on the wildcard address),
    else a free port. Servers use their protocol's port: nDPI recognises some
    protocols (DNS, Modbus) only there, and benign and attack flows of one
    protocol must not differ by port alone."""
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
            try:
                s.bind((ip, port))
            except OSError as e:
                log.warning("lab_well_known_port_taken", scenario=ctx.scenario, ip=ip, port=port, error=str(e))
                return ctx.free_port(ip, kinds[0])
    return port


def start_daemon(ctx: LabContext, name: str, argv: Sequence[str], ip: str, port: int | None,
                 timeout: float = 10.0, **popen: Any) -> Path:  # fmt: skip
    """Start an external server with its output in ``workdir/NAME.log`` and
    wait up to ``timeout`` until it accepts on ip:port (a TCP port; None for
    a UDP server, which the caller waits for); returns the log's path.
    ``popen`` goes to Popen (``user``, ``env``, ``cwd``)."""
    log_path = ctx.workdir / f"{name}.log"
    with open(log_path, "wb") as log_file:
        ctx.supervisor.start(argv, stdout=log_file, stderr=subprocess.STDOUT, **popen)
    if port is None:
        return log_path
    try:
        ctx.wait_listening(ip, port, timeout)
    except LabError as e:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        raise LabError(f"{e} ({name} said: {tail[0] if tail else 'nothing'})") from None
    return log_path


def wait_udp_bound(ctx: LabContext, ip: str, port: int, timeout: float = 10.0) -> None:
    """Block until a UDP socket is bound to ip:port (a UDP server has no
    handshake to probe without speaking its protocol): /proc/net/udp lists it."""
    local = f"{struct.unpack('<I', socket.inet_aton(ip))[0]:08X}:{port:04X}"  # as the kernel prints it (x86)

    def bound() -> bool:
        with open("/proc/net/udp", encoding="ascii") as table:
            return any(line.split()[1] == local for line in list(table)[1:])

    if not wait_until(bound, timeout):
        raise LabError(f"{ctx.scenario}: nothing is bound to UDP {ip}:{port} after {timeout:g} s")


def run_tool(ctx: LabContext, argv: Sequence[str], timeout: float = 30.0, **popen: Any) -> str:
    """Run a tool to completion; its output, or LabError if it failed.
    ``popen`` goes to Popen (``user``, ``env``, ``input`` is not supported)."""
    done = ctx.supervisor.run(argv, timeout=timeout, **popen)
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        last = output.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise LabError(f"{ctx.scenario}: {argv[0]} failed: {last[0]}")
    return output


@contextmanager
def routed_source(ctx: LabContext, server_ip: str, client_ip: str) -> Iterator[None]:
    """Make connections to ``server_ip`` that bind no address come from
    ``client_ip``, for tools without an option to bind one (hydra,
    slowhttptest, psql, ldapsearch): a /32 route in the local table with that
    preferred source, taken out again at the end. Sockets bound to an address
    (the Python clients, the readiness probes) are not affected."""
    route = ["local", f"{server_ip}/32", "dev", "lo", "src", client_ip, "table", "local"]
    run_tool(ctx, ["ip", "route", "replace", *route], timeout=10)
    try:
        yield
    finally:
        run_tool(ctx, ["ip", "route", "del", *route], timeout=10)


def owned_dir(ctx: LabContext, name: str, user: str) -> Path:
    """``workdir/NAME``, owned by ``user``: for servers that refuse to run as
    root (postgres) or drop to their own user (mariadbd). The workdir is
    opened for traversal (not listing) so that user reaches it."""
    account = pwd.getpwnam(user)
    path = ctx.workdir / name
    path.mkdir(mode=0o700)
    os.chown(path, account.pw_uid, account.pw_gid)
    ctx.workdir.chmod(0o711)
    return path


Variant = Literal["well-known", "other-port"]
WELL_KNOWN: Variant = "well-known"
OTHER_PORT: Variant = "other-port"


def service_port(ctx: LabContext, ip: str, port: int, variant: Variant,
                 kinds: Sequence[int] = (socket.SOCK_STREAM,)) -> int:  # fmt: skip
    """The server's port: its protocol's (see well_known_port), or for the
    OTHER_PORT variant a free high port, so that a model learns the traffic
    and not the port."""
    if variant == WELL_KNOWN:
        return well_known_port(ctx, ip, port, kinds)
    return ctx.free_port(ip, kinds[0])


Run = Callable[[LabContext, Variant], None]


def on_both_ports(name: str, summary: str, requires: tuple[str, ...] = (),
                  python: tuple[str, ...] = ()) -> Callable[[Run], Run]:  # fmt: skip
    """Register a benign scenario twice: ``name`` serving on its protocol's
    port, ``name-other-port`` on a free high port, with the same labels."""

    def register(run: Run) -> Run:
        for variant, suffix, where in ((WELL_KNOWN, "", "its own port"), (OTHER_PORT, f"-{OTHER_PORT}", "a high port")):
            scenario(f"{name}{suffix}", "benign", f"{summary}, on {where}", requires, python)(
                lambda ctx, variant=variant: run(ctx, variant))
        return run

    return register


def stream_sessions(ctx: LabContext, client_ip: str, server: tuple[str, int], app: str,
                    session: Callable[[BinaryIO, random.Random], int]) -> None:  # fmt: skip
    """One TCP connection per round from a port the client binds (so the label is
    exact), ``session`` speaking over it and returning how many requests it sent;
    paced at 20 ms a request."""
    rng = random.Random(ctx.index)
    sent = 0
    for _ in ctx.rounds():
        cport = ctx.free_port(client_ip)
        with socket.create_connection(server, timeout=5, source_address=(client_ip, cport)) as sock:
            with sock.makefile("rwb") as stream:
                sent += session(stream, rng)
        ctx.label(PROTO_TCP, (client_ip, cport), server, app)
        ctx.pace(sent * 20)
