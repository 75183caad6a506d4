"""DNS: the lab's own authoritative server (dnslib, port 53 where free: nDPI
knows DNS only there) answering A, AAAA and TXT queries from stub clients,
over UDP (a fresh source port per query, as resolvers do) and, for every
fourth query, over TCP."""

from __future__ import annotations

import itertools
import socket
import struct
from typing import TYPE_CHECKING

import structlog

from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import well_known_port

if TYPE_CHECKING:
    from dnslib import DNSRecord
    from dnslib.server import DNSHandler

log = structlog.get_logger(__name__)

# Answers are documentation addresses (RFC 5737, RFC 3849): data, never contacted.
ZONE = """
www.netgptd.lab.     300 IN A     192.0.2.10
www.netgptd.lab.     300 IN AAAA  2001:db8::10
api.netgptd.lab.     300 IN A     192.0.2.20
api.netgptd.lab.     300 IN A     192.0.2.21
api.netgptd.lab.     300 IN AAAA  2001:db8::20
mail.netgptd.lab.    300 IN A     192.0.2.25
netgptd.lab.         300 IN TXT   "v=spf1 ip4:192.0.2.25 -all"
_dmarc.netgptd.lab.  300 IN TXT   "v=DMARC1; p=reject"
"""
QUERIES = [("www.netgptd.lab", "A"), ("www.netgptd.lab", "AAAA"), ("api.netgptd.lab", "A"),
           ("api.netgptd.lab", "AAAA"), ("mail.netgptd.lab", "A"), ("netgptd.lab", "TXT"),
           ("_dmarc.netgptd.lab", "TXT"), ("nope.netgptd.lab", "A")]  # fmt: skip
TCP_EVERY = 4


class _Zone:
    """A dnslib resolver answering from ZONE; NXDOMAIN for names it does not hold."""

    def __init__(self) -> None:
        from dnslib import RR

        self.records = RR.fromZone(ZONE)
        self.names = {rr.rname for rr in self.records}

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        from dnslib import RCODE

        reply = request.reply()
        for rr in self.records:
            if rr.rname == request.q.qname and rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        if request.q.qname not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _ask_udp(query: bytes, server: tuple[str, int], client: tuple[str, int]) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(client)
        sock.sendto(query, server)
        return sock.recv(4096)


def _ask_tcp(query: bytes, server: tuple[str, int], client: tuple[str, int]) -> bytes:
    with socket.create_connection(server, timeout=5, source_address=client) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        with sock.makefile("rb") as reply:
            (length,) = struct.unpack("!H", reply.read(2))
            return reply.read(length)


TRANSPORTS = {PROTO_UDP: (socket.SOCK_DGRAM, _ask_udp), PROTO_TCP: (socket.SOCK_STREAM, _ask_tcp)}


@scenario("dns", "benign", "DNS A/AAAA/TXT queries over UDP and TCP to the lab's own server (dnslib)",
          python=("dnslib",))  # fmt: skip
def dns(ctx: LabContext) -> None:
    from dnslib import QTYPE, DNSRecord
    from dnslib.server import DNSLogger, DNSServer

    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 53, (socket.SOCK_DGRAM, socket.SOCK_STREAM))
    quiet = DNSLogger(log="error", logf=lambda line: log.debug("lab_dns_server", line=line))
    zone = _Zone()
    servers = [DNSServer(zone, address=server_ip, port=port, tcp=tcp, logger=quiet) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    try:
        ctx.wait_listening(server_ip, port)
        for sent, (name, qtype) in enumerate(itertools.cycle(QUERIES), start=1):
            if not ctx.running():
                break
            query = DNSRecord.question(name, qtype)
            proto = PROTO_TCP if sent % TCP_EVERY == 0 else PROTO_UDP
            kind, ask = TRANSPORTS[proto]
            client = (client_ip, ctx.free_port(client_ip, kind))
            reply = DNSRecord.parse(ask(query.pack(), (server_ip, port), client))
            if reply.header.id != query.header.id or QTYPE[reply.q.qtype] != qtype:
                raise LabError(f"dns: reply {reply.header.id} does not answer query {query.header.id}")
            ctx.label(proto, client, (server_ip, port), "DNS")
            ctx.pace(sent * 40)
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()
