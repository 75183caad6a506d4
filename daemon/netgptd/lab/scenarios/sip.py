"""SIP: a Kamailio registrar and proxy of the lab's own (its config in the
workdir, locations in memory, UDP on the lab address) and sipsak as the
phones: OPTIONS keep-alive pings and REGISTERs of a handful of extensions.
sipsak binds no address, so the client's comes from a route (see
routed_source); each request's source port is pinned (-l with -S, one port
for sending and receiving), so its flow is known exactly."""

from __future__ import annotations

import glob
import random
import socket

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, routed_source, run_tool, service_port,
                                            start_daemon, wait_udp_bound)  # fmt: skip

EXTENSIONS = ["alice", "bob", "carol", "desk-101", "desk-102", "lobby"]
KAMAILIO_CONFIG = """\
#!KAMAILIO
debug=1
log_stderror=yes
children=2
listen=udp:{ip}:{port}
mpath="{modules}"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("usrloc", "db_mode", 0)
request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
  if (is_method("OPTIONS")) {{ sl_send_reply("200", "OK"); exit; }}
  if (is_method("REGISTER")) {{ save("location"); exit; }}
  if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
  t_relay();
}}
"""


def _modules() -> str:
    """Kamailio's module folder (Debian's multiarch /usr/lib/TRIPLET/kamailio/modules)."""
    found = glob.glob("/usr/lib/*/kamailio/modules/registrar.so")
    if not found:
        raise LabError("sip: Kamailio's registrar module is not installed (run ./setup.sh)")
    return found[0].rsplit("/", 1)[0]


@on_both_ports("sip", "SIP phones pinging and registering with a registrar (kamailio, sipsak)",
               requires=("kamailio", "sipsak", "ip"))  # fmt: skip
def sip(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 5060, variant, kinds=(socket.SOCK_DGRAM,))
    config = ctx.workdir / "kamailio.cfg"
    config.write_text(KAMAILIO_CONFIG.format(ip=server_ip, port=port, modules=_modules()))
    argv = ["kamailio", "-f", str(config), "-DD", "-E", "-Y", str(ctx.workdir), "-P", str(ctx.workdir / "kamailio.pid"),
            "-m", "32", "-M", "8"]  # fmt: skip
    start_daemon(ctx, "kamailio", argv, server_ip, None)
    wait_udp_bound(ctx, server_ip, port)
    rng = random.Random(ctx.index)
    with routed_source(ctx, server_ip, client_ip):
        for sent in ctx.rounds():
            cport = ctx.free_port(client_ip, socket.SOCK_DGRAM)
            phone = ["sipsak", "-S", "-l", str(cport), "-H", client_ip]
            if sent % 2:
                run_tool(ctx, [*phone, "-s", f"sip:{server_ip}:{port}"], timeout=10)
            else:
                extension = rng.choice(EXTENSIONS)
                run_tool(ctx, [*phone, "-U", "-i", "-x", str(rng.choice([60, 300, 3600])),
                               "-s", f"sip:{extension}@{server_ip}:{port}"], timeout=10)  # fmt: skip
            ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, port), "SIP")
            ctx.pace(sent * 20)
