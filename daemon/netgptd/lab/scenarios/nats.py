"""NATS: nats-server on the lab address (a token, no JetStream), a worker
that subscribes to a work queue and answers requests for the whole run, and
services that each connect, send a few requests, publish events and leave:
NATS's text protocol (CONNECT, SUB, PUB, MSG, PING) from raw clients over
their own bound sockets."""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import BinaryIO

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, service_port, start_daemon

TOKEN = "lab-nats-token"
REQUESTS_PER_CONNECTION = 4


def _connect(server: tuple[str, int], bind: tuple[str, int], name: str) -> tuple[socket.socket, BinaryIO]:
    """A connected client past INFO and CONNECT (verbose off, PING answered)."""
    sock = socket.create_connection(server, timeout=5, source_address=bind)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as NATS's own clients (Go's default)
    stream = sock.makefile("rwb")
    if not stream.readline().startswith(b"INFO "):
        raise LabError("nats: the server sent no INFO")
    options = {"verbose": False, "pedantic": False, "auth_token": TOKEN, "name": name, "lang": "python",
               "version": "0.1", "protocol": 1, "headers": False}  # fmt: skip
    _send(stream, b"CONNECT " + json.dumps(options).encode(), b"PING")
    _expect(stream, b"PONG")
    return sock, stream


def _send(stream: BinaryIO, *lines: bytes) -> None:
    stream.write(b"".join(line + b"\r\n" for line in lines))
    stream.flush()


def _expect(stream: BinaryIO, what: bytes) -> bytes:
    """The next protocol line other than PING (answered), which must start with ``what``."""
    while True:
        line = stream.readline().rstrip(b"\r\n")
        if line == b"PING":
            _send(stream, b"PONG")
        elif line.startswith(what):
            return line
        else:
            raise LabError(f"nats: expected {what!r}, got {line[:80]!r}")


def _serve_work(stream: BinaryIO, stop: threading.Event) -> None:
    """The worker: answer each request on work.resize with a result."""
    while not stop.is_set():
        try:
            header = _expect(stream, b"MSG ").split()
        except (OSError, LabError):
            return  # the run ends: the worker's socket is shut down
        reply_to, size = (header[3], int(header[4])) if len(header) == 5 else (None, int(header[3]))
        job = json.loads(stream.read(size + 2)[:-2])
        if reply_to:
            result = json.dumps({"id": job["id"], "ok": True, "bytes": job["w"] * job["h"] * 3}).encode()
            _send(stream, b"PUB %s %d" % (reply_to, len(result)), result)


def _publish(stream: BinaryIO, subject: str, payload: dict, reply_to: str = "") -> None:
    data = json.dumps(payload).encode()
    _send(stream, " ".join(filter(None, ["PUB", subject, reply_to, str(len(data))])).encode(), data)


@on_both_ports("nats", "NATS request-reply and events between services (nats-server, raw NATS clients)",
               requires=("nats-server",))  # fmt: skip
def nats(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    server = (server_ip, service_port(ctx, server_ip, 4222, variant))
    argv = ["nats-server", "-a", server_ip, "-p", str(server[1]), "--auth", TOKEN, "-m", "0"]
    start_daemon(ctx, "nats-server", argv, *server)
    worker_bind = (ctx.host(21), ctx.free_port(ctx.host(21)))
    worker_sock, worker = _connect(server, worker_bind, "resizer")
    stop = threading.Event()
    _send(worker, b"SUB work.resize workers 1", b"PING")
    _expect(worker, b"PONG")
    serving = threading.Thread(target=_serve_work, args=(worker, stop), daemon=True)
    serving.start()
    rng = random.Random(ctx.index)
    sent = 0
    try:
        for _ in ctx.rounds():
            bind = (client_ip, ctx.free_port(client_ip))
            sock, stream = _connect(server, bind, f"web-{sent % 6}")
            with sock, stream:
                inbox = f"_INBOX.{rng.randbytes(6).hex()}"
                _send(stream, f"SUB {inbox}.* 2".encode())
                for i in range(REQUESTS_PER_CONNECTION):
                    job = {"id": sent, "w": rng.choice([320, 640, 1280]), "h": rng.choice([240, 480, 720])}
                    _publish(stream, "work.resize", job, f"{inbox}.{i}")
                    _expect(stream, b"MSG ")
                    stream.readline()
                    _publish(stream, f"events.image.{rng.choice(['upload', 'resize', 'view'])}", {"id": sent})
                    sent += 1
                _send(stream, b"UNSUB 2", b"PING")
                _expect(stream, b"PONG")
            ctx.label(PROTO_TCP, bind, server, "Nats")
            ctx.pace(sent * 10)
    finally:
        stop.set()
        worker_sock.shutdown(socket.SHUT_RDWR)
        worker_sock.close()
        serving.join(5)
        ctx.label(PROTO_TCP, worker_bind, server, "Nats")
