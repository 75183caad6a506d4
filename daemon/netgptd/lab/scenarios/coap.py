"""CoAP: libcoap's example server (coap-server: a clock, an example data
resource, resource discovery) and libcoap's coap-client as IoT devices and
a gateway: discovery, clock reads, sensor readings PUT and read back.
Each request's source address and port are the client's own (-a, -p), so
its flow is known exactly."""

from __future__ import annotations

import json
import random
import socket

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, run_tool, service_port, start_daemon,
                                            wait_udp_bound)  # fmt: skip

SERVER, CLIENT = "coap-server-notls", "coap-client-notls"  # Debian's libcoap3-bin builds without (D)TLS


def _request(rng: random.Random, sent: int) -> list[str]:
    """One request's method, options and resource."""
    if sent % 4 == 1:
        return ["-m", "get", "/.well-known/core"]
    if sent % 4 == 2:
        return ["-m", "get", "/time"]
    if sent % 4 == 3:
        reading = {"sensor": f"th-{rng.randrange(20):02d}", "t": round(rng.uniform(17, 27), 1),
                   "rh": rng.randrange(30, 70)}  # fmt: skip
        return ["-m", "put", "-t", "json", "-e", json.dumps(reading), "/example_data"]
    return ["-m", "get", "/example_data"]


@on_both_ports("coap", "CoAP discovery, clock reads and sensor data (libcoap coap-server, coap-client)",
               requires=(SERVER, CLIENT))  # fmt: skip
def coap(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 5683, variant, kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM))
    start_daemon(ctx, "coap-server", [SERVER, "-A", server_ip, "-p", str(port), "-d", "20", "-v", "3"], server_ip, None)
    wait_udp_bound(ctx, server_ip, port)
    rng = random.Random(ctx.index)
    for sent in ctx.rounds():
        cport = ctx.free_port(client_ip, socket.SOCK_DGRAM)
        *options, resource = _request(rng, sent)
        run_tool(ctx, [CLIENT, "-a", client_ip, "-p", str(cport), "-B", "5", *options,
                       f"coap://{server_ip}:{port}{resource}"], timeout=10)  # fmt: skip
        ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, port), "COAP")
        ctx.pace(sent * 20)
