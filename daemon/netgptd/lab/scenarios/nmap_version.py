"""nmap's version scan (-sV): a SYN scan (exact labels from the packet trace)
and then service probes over full connects to the open ports, whose source
ports nmap cannot pin: those are labelled by the address plan, each open
port with the app it speaks."""

from __future__ import annotations

import socket
from collections import defaultdict

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import ATTACKER
from netgptd.lab.scenarios._nmap import nmap, scan_ports, scan_victim


@scenario("nmap-version", "attack", "nmap version scan (-sV) of 200 TCP ports of a victim with open services",
          requires=("nmap",), python=("dnslib",))  # fmt: skip
def nmap_version(ctx: LabContext) -> None:
    with scan_victim(ctx) as victim:
        ports_by_app: dict[str, set[int]] = defaultdict(set)
        for port, app in victim.tcp.items():
            ports_by_app[app].add(port)
        for app, ports in ports_by_app.items():
            ctx.label_rule(PROTO_TCP, ctx.host(ATTACKER), victim.ip, app, "scan", ports)
        nmap(ctx, victim, ["-sV"], scan_ports(victim.ip, socket.SOCK_STREAM, victim.tcp), {})
