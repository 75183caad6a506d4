"""nmap's SYN scan (-sS): raw SYNs from a pinned source port, so every probe's
flow is known exactly from nmap's own packet trace."""

from __future__ import annotations

import socket

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._nmap import nmap, scan_ports, scan_victim


@scenario("nmap-syn", "attack", "nmap SYN scan (-sS) of 200 TCP ports of a victim with open services",
          requires=("nmap",), python=("dnslib",))  # fmt: skip
def nmap_syn(ctx: LabContext) -> None:
    with scan_victim(ctx) as victim:
        nmap(ctx, victim, ["-sS"], scan_ports(victim.ip, socket.SOCK_STREAM, victim.tcp), {})
