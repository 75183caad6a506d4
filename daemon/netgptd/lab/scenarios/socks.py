"""SOCKS: a Dante SOCKS 5 proxy of the lab's own (it relays only to the
scenario's own network) in front of the lab web server, and curl clients
fetching pages through it from pinned source ports. A fetch is two flows:
SOCKS from the client to the proxy (known by curl's pinned port), and
HTTP from the proxy to the web server (known by the server's accept log)."""

from __future__ import annotations

import random

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._attack_targets import label_peers, serve_logged_http, stop_servers
from netgptd.lab.scenarios._servers import Variant, on_both_ports, run_tool, service_port, start_daemon
from netgptd.lab.scenarios.http1 import PAGES, _Pages

DANTED_CONFIG = """\
logoutput: stderr
internal: {proxy} port = {port}
external: {proxy}
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{
  from: {network} to: 0.0.0.0/0
}}
socks pass {{
  from: {network} to: {network}
  command: connect
}}
"""


@on_both_ports("socks", "Web pages fetched through a SOCKS 5 proxy (Dante danted, curl --socks5)",
               requires=("danted", "curl"))  # fmt: skip
def socks(ctx: LabContext, variant: Variant) -> None:
    proxy_ip, client_ip, web_ip = ctx.host(10), ctx.host(20), ctx.host(30)
    port = service_port(ctx, proxy_ip, 1080, variant)
    web = (web_ip, ctx.free_port(web_ip))
    config = ctx.workdir / "danted.conf"
    config.write_text(DANTED_CONFIG.format(proxy=proxy_ip, port=port, network=ctx.network))
    server = serve_logged_http(*web, _Pages)
    rng = random.Random(ctx.index)
    try:
        start_daemon(ctx, "danted", ["danted", "-f", str(config), "-N", "1", "-p", str(ctx.workdir / "danted.pid")],
                     proxy_ip, port)  # fmt: skip
        for sent in ctx.rounds():
            cport = ctx.free_port(client_ip)
            run_tool(ctx, ["curl", "-sS", "-o", "/dev/null", "-A", "netgptd-lab", "--socks5", f"{proxy_ip}:{port}",
                           "--interface", client_ip, "--local-port", str(cport),
                           f"http://{web[0]}:{web[1]}{rng.choice(PAGES)}"], timeout=10)  # fmt: skip
            ctx.label(PROTO_TCP, (client_ip, cport), (proxy_ip, port), "SOCKS")
            ctx.pace(sent * 20)
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, proxy_ip, web, "HTTP")
