"""nmap's UDP scan (-sU): datagrams from a pinned source port, labelled exactly
from nmap's own packet trace; the DNS port answers."""

from __future__ import annotations

import socket

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._nmap import nmap, scan_ports, scan_victim

# Ports (of those scanned) to which nmap sends a protocol payload (its
# nmap-payloads file) rather than an empty datagram, with the name nDPI
# gives that protocol: those probes speak it even where no server listens.
PAYLOAD_APPS = {53: "DNS", 67: "DHCP", 69: "TFTP", 123: "NTP", 137: "NetBIOS", 161: "SNMP", 177: "XDMCP"}


@scenario("nmap-udp", "attack", "nmap UDP scan (-sU) of 200 UDP ports of a victim with a DNS server",
          requires=("nmap",), python=("dnslib",))  # fmt: skip
def nmap_udp(ctx: LabContext) -> None:
    with scan_victim(ctx) as victim:
        apps = {**PAYLOAD_APPS, **victim.udp}
        nmap(ctx, victim, ["-sU"], scan_ports(victim.ip, socket.SOCK_DGRAM, victim.udp), apps)
