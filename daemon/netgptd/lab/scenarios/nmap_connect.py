"""nmap's connect scan (-sT): full TCP connects through the kernel from the
attacker's address. nmap cannot pin their source ports, so the flows are
labelled by the address plan (attacker to victim on the scanned ports)."""

from __future__ import annotations

import socket

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import ATTACKER
from netgptd.lab.scenarios._nmap import nmap, scan_ports, scan_victim


@scenario("nmap-connect", "attack", "nmap connect scan (-sT) of 200 TCP ports of a victim with open services",
          requires=("nmap",), python=("dnslib",))  # fmt: skip
def nmap_connect(ctx: LabContext) -> None:
    with scan_victim(ctx) as victim:
        ports = scan_ports(victim.ip, socket.SOCK_STREAM, victim.tcp)
        ctx.label_rule(PROTO_TCP, ctx.host(ATTACKER), victim.ip, "Unknown", "scan", set(ports))
        nmap(ctx, victim, ["-sT"], ports, {})
