"""NTP: chrony on both sides. The server is a chronyd of the lab's own
(serving its local clock at stratum 8 on the lab address, never touching the
system clock); each client is a one-shot ``chronyd -Q`` that polls it in a
burst, prints the offset and exits, as a host checking its clock does. Each
client's source port is pinned (acquisitionport), so its flow is known
exactly."""

from __future__ import annotations

import socket

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, run_tool, service_port,
                                            start_daemon, wait_udp_bound)  # fmt: skip

CHRONY_USER = "_chrony"  # chronyd drops to it; its pid files go where it may remove them
SERVER_CONFIG = """\
port {port}
bindaddress {ip}
allow {network}
local stratum 8
cmdport 0
pidfile {run}/server.pid
"""


@on_both_ports("ntp", "NTP clock checks (a chronyd server, one-shot chronyd -Q clients)", requires=("chronyd",))
def ntp(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 123, variant, kinds=(socket.SOCK_DGRAM,))
    run = owned_dir(ctx, "chrony", CHRONY_USER)
    config = ctx.workdir / "chrony-server.conf"
    config.write_text(SERVER_CONFIG.format(port=port, ip=server_ip, network=ctx.network, run=run))
    start_daemon(ctx, "chronyd", ["chronyd", "-d", "-x", "-f", str(config)], server_ip, None)
    wait_udp_bound(ctx, server_ip, port)
    for sent in ctx.rounds():
        cport = ctx.free_port(client_ip, socket.SOCK_DGRAM)
        run_tool(ctx, ["chronyd", "-Q", f"server {server_ip} port {port} iburst minpoll -4 maxpoll -4",
                       f"bindacqaddress {client_ip}", f"acquisitionport {cport}", "cmdport 0",
                       f"pidfile {run}/client.pid"], timeout=15)  # fmt: skip
        ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, port), "NTP")
        ctx.pace(sent * 40)
