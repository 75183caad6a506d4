"""SNMP: a Net-SNMP snmpd of the lab's own (its config and persistent state
in the workdir, a read-only community for the lab network) polled by a
monitoring station with Net-SNMP's tools: system scalars with snmpget,
the system group with snmpwalk, interface counters with snmpbulkwalk, now
and then over SNMPv1. Each poll's source port is pinned (clientaddr), so
its flow is known exactly."""

from __future__ import annotations

import random
import socket

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, run_tool, service_port, start_daemon,
                                            wait_udp_bound)  # fmt: skip

COMMUNITY = "lab-snmp-community"
SYSTEM, INTERFACES = "1.3.6.1.2.1.1", "1.3.6.1.2.1.2.2.1"
SCALARS = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"]
SNMPD_CONFIG = """\
rocommunity {community} {network}
sysLocation lab rack 3
sysContact noc@netgptd.lab
"""


def _poll(rng: random.Random, sent: int) -> list[str]:
    """One poll's tool and OIDs (numeric: no MIBs are loaded)."""
    version = "1" if sent % 5 == 0 else "2c"
    kind = rng.choice(["get", "walk", "bulk"]) if version == "2c" else rng.choice(["get", "walk"])
    if kind == "get":
        return ["snmpget", f"-v{version}", *rng.sample(SCALARS, rng.randrange(1, 4))]
    if kind == "walk":
        return ["snmpwalk", f"-v{version}", SYSTEM]
    return ["snmpbulkwalk", "-v2c", "-Cr10", f"{INTERFACES}.{rng.choice([2, 10, 16])}"]


@on_both_ports("snmp", "SNMP polls of an agent (snmpd, snmpget/snmpwalk/snmpbulkwalk)",
               requires=("snmpd", "snmpget", "snmpwalk", "snmpbulkwalk"))  # fmt: skip
def snmp(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 161, variant, kinds=(socket.SOCK_DGRAM,))
    state = ctx.workdir / "snmp"
    state.mkdir()
    env = {"SNMP_PERSISTENT_DIR": str(state), "PATH": "/usr/bin:/usr/sbin:/bin"}  # not /var/lib/snmp
    config = ctx.workdir / "snmpd.conf"
    config.write_text(SNMPD_CONFIG.format(community=COMMUNITY, network=ctx.network))
    argv = ["snmpd", "-f", "-Lo", "-C", "-c", str(config), "-M", "/dev/null", f"udp:{server_ip}:{port}"]
    start_daemon(ctx, "snmpd", argv, server_ip, None, env=env)
    wait_udp_bound(ctx, server_ip, port)
    rng = random.Random(ctx.index)
    for sent in ctx.rounds():
        cport = ctx.free_port(client_ip, socket.SOCK_DGRAM)
        tool, version, *oids = _poll(rng, sent)
        run_tool(ctx, [tool, version, "-c", COMMUNITY, "-M", "/dev/null", "-On", f"--clientaddr={client_ip}:{cport}",
                       "--clientaddrUsesPort=yes", f"{server_ip}:{port}", *oids], timeout=10, env=env)  # fmt: skip
        ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, port), "SNMP")
        ctx.pace(sent * 20)
