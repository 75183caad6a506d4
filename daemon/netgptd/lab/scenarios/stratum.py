"""Cryptocurrency mining: a small Stratum v1 pool (JSON-RPC lines over TCP,
port 3333 where free) and a miner that subscribes, authorizes, takes jobs
from mining.notify and submits shares. Every flow to the pool is mining."""

from __future__ import annotations

import json
import random
import socket
import socketserver
import time
from typing import Any, BinaryIO

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import QuietTCPServer, serve_in_thread, well_known_port

ATTACK = "mining"
WORKER = "bc1qnetgptdlabwallet0000000000000000000.rig1"
SHARES_PER_CONNECTION = 8
NEW_JOB_EVERY = 3  # shares


def _send(stream: BinaryIO, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


class _Pool(socketserver.StreamRequestHandler):
    """A pool's side of one miner connection."""

    def handle(self) -> None:
        rng = random.Random()
        shares = 0
        for line in self.rfile:
            request = json.loads(line)
            method, result = request.get("method"), True
            if method == "mining.subscribe":
                result = [[["mining.set_difficulty", "1"], ["mining.notify", "1"]], rng.randbytes(4).hex(), 4]
            elif method == "mining.submit":
                shares += 1
                result = rng.random() > 0.05  # now and then a stale share
            _send(self.wfile, {"id": request.get("id"), "result": result, "error": None})
            if method == "mining.subscribe":
                _send(self.wfile, {"id": None, "method": "mining.set_difficulty", "params": [16384]})
            if method == "mining.subscribe" or (method == "mining.submit" and shares % NEW_JOB_EVERY == 0):
                _send(self.wfile, {"id": None, "method": "mining.notify", "params": _job(rng)})


def _job(rng: random.Random) -> list[Any]:
    """mining.notify's params: job id, previous hash, coinbase halves, merkle branch, version, nbits, ntime, clean."""
    return [rng.randbytes(4).hex(), rng.randbytes(32).hex(), rng.randbytes(59).hex(), rng.randbytes(48).hex(),
            [rng.randbytes(32).hex() for _ in range(rng.randrange(2, 12))], "20000000", "17034219",
            f"{int(time.time()):08x}", True]  # fmt: skip


class _Miner:
    """A miner's JSON-RPC side: calls wait for their reply and keep the latest job."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = sock.makefile("rwb")
        self.next_id = 1
        self.job: list[Any] | None = None

    def call(self, method: str, params: list[Any]) -> Any:
        request_id, self.next_id = self.next_id, self.next_id + 1
        _send(self.stream, {"id": request_id, "method": method, "params": params})
        for line in self.stream:
            message = json.loads(line)
            if message.get("method") == "mining.notify":
                self.job = message["params"]
            elif message.get("id") == request_id:
                return message["result"]
        raise LabError(f"stratum: the pool hung up during {method}")


def _mine(pool: tuple[str, int], client: tuple[str, int], rng: random.Random) -> None:
    """One miner session: subscribe, authorize, submit shares for the current job."""
    with socket.create_connection(pool, timeout=5, source_address=client) as sock:
        miner = _Miner(sock)
        miner.call("mining.subscribe", ["cpuminer-opt/3.23.3", None])
        if miner.call("mining.authorize", [WORKER, "x"]) is not True or miner.job is None:
            raise LabError("stratum: the pool did not authorize the worker and send a job")
        for _ in range(SHARES_PER_CONNECTION):
            time.sleep(rng.uniform(0.01, 0.05))  # "hashing"
            job_id, ntime = miner.job[0], miner.job[7]
            miner.call("mining.submit", [WORKER, job_id, rng.randbytes(4).hex(), ntime, rng.randbytes(4).hex()])
        miner.stream.close()


@scenario("stratum", "attack", "Stratum mining pool and miner (JSON-RPC over TCP), labelled attack 'mining'")
def stratum(ctx: LabContext) -> None:
    pool_ip, miner_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, pool_ip, 3333)
    server = serve_in_thread(QuietTCPServer((pool_ip, port), _Pool))
    rng = random.Random(ctx.index)
    try:
        ctx.wait_listening(pool_ip, port)
        sent = 0
        while ctx.running():
            client = (miner_ip, ctx.free_port(miner_ip))
            _mine((pool_ip, port), client, rng)
            ctx.label(PROTO_TCP, client, (pool_ip, port), "Mining", ATTACK)
            sent += SHARES_PER_CONNECTION + 2
            ctx.pace(sent * 20)
    finally:
        server.shutdown()
        server.server_close()
