"""Redis: redis-server on the lab address (no persistence, a password) and
web-worker-like clients speaking RESP over their own bound sockets:
sessions, counters, a job queue and hashes, partly pipelined."""

from __future__ import annotations

import json
import random
from typing import BinaryIO

from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import start_daemon, stream_sessions, well_known_port

PASSWORD = "lab-redis-password"  # without one, protected mode refuses clients from 127.77.x.x (not 127.0.0.1)
Reply = bytes | int | None | list["Reply"]


def _encode(*args: str | int) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _read(stream: BinaryIO) -> Reply:
    line = stream.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"-":
        raise LabError(f"redis: {rest.decode(errors='replace')}")
    if kind == b"$":
        return None if int(rest) < 0 else stream.read(int(rest) + 2)[:-2]
    if kind == b"*":
        return None if int(rest) < 0 else [_read(stream) for _ in range(int(rest))]
    raise LabError(f"redis: unexpected reply {line!r}")


def _pipeline(stream: BinaryIO, *commands: tuple[str | int, ...]) -> list[Reply]:
    """Send the commands at once, then read one reply each."""
    stream.write(b"".join(_encode(*c) for c in commands))
    stream.flush()
    return [_read(stream) for _ in commands]


def _session(stream: BinaryIO, rng: random.Random) -> int:
    """One worker's requests; returns how many commands it sent."""
    user, token = rng.randrange(1000), rng.randbytes(8).hex()
    steps = [
        [("AUTH", PASSWORD)],
        [("CLIENT", "SETNAME", f"web-{user % 8}")],
        [("PING",)],
        [("SET", f"session:{token}", json.dumps({"user": user, "cart": rng.sample(range(100), 3)}), "EX", 1800)],
        [("GET", f"session:{token}")],
        [("INCR", "stats:page_views"), ("HINCRBY", f"user:{user}", "visits", 1), ("EXPIRE", f"user:{user}", 86400)],
        [("HGETALL", f"user:{user}")],
        [("LPUSH", "queue:emails", json.dumps({"to": user, "template": "welcome"}))],
        [("LRANGE", "queue:emails", 0, 9), ("LTRIM", "queue:emails", 0, 99)],
    ]
    for commands in steps:
        _pipeline(stream, *commands)
    return sum(len(c) for c in steps)


@scenario("redis", "benign", "Redis sessions, counters and queues over RESP (redis-server, raw RESP client)",
          requires=("redis-server",))  # fmt: skip
def redis(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 6379)
    argv = ["redis-server", "--bind", server_ip, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(ctx.workdir), "--requirepass", PASSWORD]  # fmt: skip
    start_daemon(ctx, "redis", argv, server_ip, port)
    stream_sessions(ctx, client_ip, (server_ip, port), "RESP", _session)
