"""What the nmap scenarios share: a victim with a few open services (the lab
HTTP server, echo and daytime over TCP, the lab DNS server over UDP) and nmap
run after run against it, from the attacker's address, at a bounded rate."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import BaseServer, StreamRequestHandler

from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._attack_targets import (ATTACKER, VICTIM, LabZone, run_timed_tool, serve_dns,
                                                   serve_logged_http, stop_servers)
from netgptd.lab.scenarios._servers import QuietTCPServer, serve_in_thread, well_known_port
from netgptd.lab.scenarios.http1 import _Pages

SCAN_PORTS = range(1, 201)
SOURCE_PORT_BASE = 40000  # run k pins source port BASE + k (raw scans honour it; connects do not)
MIN_RUN_S = 0.5  # no new run starts with less time left
ZONE = "netgptd.lab"
SENT = re.compile(r"^SENT \([\d.]+s\) (TCP|UDP) ([\d.]+):(\d+) > ([\d.]+):(\d+) ", re.MULTILINE)


@dataclass(frozen=True)
class Victim:
    """The scanned host: its address and its open ports, each with the app it speaks."""

    ip: str
    tcp: Mapping[int, str]
    udp: Mapping[int, str]


class _Echo(StreamRequestHandler):
    """RFC 862 echo: every line back until the client hangs up."""

    timeout = 10

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class _Daytime(StreamRequestHandler):
    """RFC 867 daytime: the time as a line of text, then close."""

    def handle(self) -> None:
        self.wfile.write(time.strftime("%A, %B %d, %Y %H:%M:%S-UTC\r\n", time.gmtime()).encode())


@contextmanager
def scan_victim(ctx: LabContext) -> Iterator[Victim]:
    """Start the victim's services on their well-known ports (where free) and
    end them again."""
    ip = ctx.host(VICTIM)
    http_port, echo_port, daytime_port = (well_known_port(ctx, ip, port) for port in (80, 7, 13))
    servers: list[BaseServer] = [
        serve_logged_http(ip, http_port, _Pages),
        serve_in_thread(QuietTCPServer((ip, echo_port), _Echo)),
        serve_in_thread(QuietTCPServer((ip, daytime_port), _Daytime)),
    ]
    dns = serve_dns(ctx, ip, LabZone(ZONE, ip))
    servers.append(dns.server)
    try:
        for port in (http_port, echo_port, daytime_port):
            ctx.wait_listening(ip, port)
        yield Victim(ip, {http_port: "HTTP", echo_port: "Unknown", daytime_port: "Unknown"},
                     {dns.server.server_address[1]: "DNS"})  # fmt: skip
    finally:
        stop_servers(servers)


def scan_ports(ip: str, kind: int, open_ports: Iterable[int]) -> list[int]:
    """SCAN_PORTS and the victim's open ports, less any port another program
    holds on ``ip`` (a wildcard listener of this host): nmap probes only the
    lab's own services and closed ports."""
    ours = set(open_ports)

    def free(port: int) -> bool:
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError:
                return False
            return True

    return sorted(port for port in ours.union(SCAN_PORTS) if port in ours or free(port))


def nmap(ctx: LabContext, victim: Victim, options: Sequence[str], ports: Sequence[int],
         apps: Mapping[int, str]) -> None:  # fmt: skip
    """Run nmap with ``options`` against ``ports`` of the victim, run after run
    until the time is up, and label exactly every probe packet nmap says it
    sent (--packet-trace) from the attacker's address and pinned source port;
    the label's app is ``apps[port]``, else Unknown."""
    attacker = ctx.host(ATTACKER)
    port_list = ",".join(map(str, ports))
    run = 0
    while run == 0 or ctx.remaining > MIN_RUN_S:
        argv = ["nmap", *options, "-n", "-Pn", "-e", "lo", "-S", attacker, "-g", str(SOURCE_PORT_BASE + run),
                "--max-rate", str(ctx.max_rate), "--max-retries", "1",
                "--host-timeout", f"{max(1, int(ctx.remaining))}s", "--packet-trace", "-p", port_list, victim.ip]  # fmt: skip
        output = run_timed_tool(ctx, argv, timeout=ctx.remaining + 2)  # -sV outlasts --host-timeout
        for proto, sip, sport, dip, dport in SENT.findall(output):
            if sip == attacker and dip == victim.ip:
                ctx.label(PROTO_TCP if proto == "TCP" else PROTO_UDP, (sip, int(sport)), (dip, int(dport)),
                          apps.get(int(dport), "Unknown"), "scan")  # fmt: skip
        run += 1
