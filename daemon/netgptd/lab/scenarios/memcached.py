"""Memcached: memcached on the lab address (TCP only, as nobody) and
web-worker-like clients speaking its text protocol over their own bound
sockets: page fragments cached and read back, counters, misses and deletes."""

from __future__ import annotations

import random
from typing import BinaryIO

from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, service_port, start_daemon, stream_sessions

PAGES = ["home", "news", "cart", "search", "item"]


def _ask(stream: BinaryIO, command: str, data: bytes | None = None) -> bytes:
    """Send one command (with its data block) and read its reply up to END,
    STORED, DELETED, NOT_FOUND, a number or an error line."""
    stream.write(command.encode() + b"\r\n" + (data + b"\r\n" if data is not None else b""))
    stream.flush()
    reply = b""
    while True:
        line = stream.readline()
        if not line:
            raise LabError("memcached: the server closed the connection")
        reply += line
        if line.startswith(b"VALUE "):
            reply += stream.read(int(line.split()[3]) + 2)
        elif line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise LabError(f"memcached: {line.strip().decode(errors='replace')} for {command!r}")
        else:
            return reply


def _session(stream: BinaryIO, rng: random.Random) -> int:
    """One worker's requests; returns how many it sent."""
    page, user = rng.choice(PAGES), rng.randrange(500)
    fragment = (f"<div class='{page}'>" + "lorem ipsum " * rng.randrange(20, 400) + "</div>").encode()
    commands: list[tuple[str, bytes | None]] = [
        (f"get page:{page}:{user}", None),
        (f"set page:{page}:{user} 0 300 {len(fragment)}", fragment),
        (f"gets page:{page}:{user} page:{rng.choice(PAGES)}:{user}", None),
        ("add views:today 0 86400 1", b"0"),
        ("incr views:today 1", None),
        (f"touch session:{user} 1800", None),
    ]
    if rng.random() < 0.3:
        commands.append((f"delete page:{page}:{user}", None))
    for command, data in commands:
        _ask(stream, command, data)
    return len(commands)


@on_both_ports("memcached", "Memcached page-fragment caching over its text protocol (memcached, raw clients)",
               requires=("memcached",))  # fmt: skip
def memcached(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 11211, variant)
    argv = ["memcached", "-l", server_ip, "-p", str(port), "-U", "0", "-u", "nobody", "-m", "16"]
    start_daemon(ctx, "memcached", argv, server_ip, port)
    stream_sessions(ctx, client_ip, (server_ip, port), "Memcached", _session)
