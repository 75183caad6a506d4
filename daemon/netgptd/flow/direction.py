"""Which side of a new flow is the client, from the flow's first seen packet.

A capture may start mid-conversation or with the server's reply (a DNS
answer, a TCP stream whose handshake was before the capture began), so
"whoever spoke first is the client" swaps client and server there. The
first packet's own evidence decides instead; the first rule that decides
wins:

1. TCP handshake: a SYN without ACK comes from the client, a SYN-ACK from
   the server.
2. The first payload (TCP and UDP) says whether it is a request or a reply:
   a DNS header (TCP: after its 2-byte length) on port 53, 5353 or 5355
   with the QR bit set is a reply, clear a query (only a plausible one:
   opcode QUERY, NOTIFY or UPDATE, fewer than 256 questions); ``HTTP/1.`` is a
   response, an HTTP method a request; over TCP, a TLS handshake record
   holding a ServerHello is the server's, a ClientHello the client's.
3. Port roles: a service port (1-1023, or one of ``SERVICE_PORTS``) facing
   a port that is not one is the server's side. Otherwise an ephemeral
   port (32768 and up: Linux's range starts there, Windows' and IANA's at
   49152) facing a non-zero port below 32768 is the client's side.
4. Otherwise the first packet's sender is the client.

ICMP flows keep the first packet's sender as client (their "ports" are
type and code). ``hotpath/src/direction.rs`` is this module's Rust twin,
rule for rule: the two flow tables must orient every flow alike.
"""

from __future__ import annotations

from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN
from netgptd.flow.logins import HTTP_METHODS

DNS_PORTS = frozenset((53, 5353, 5355))  # DNS, mDNS, LLMNR

# Registered ports (1024 and up) of common services, the ones an
# ephemeral-looking port would not mistake: databases, brokers, VoIP and
# NAT traversal, remote access, web alternates, industrial protocols.
SERVICE_PORTS = frozenset((
    1080, 1194, 1433, 1521, 1701, 1723, 1812, 1813, 1883, 1900, 2049, 2181, 2222, 2375, 2376, 2404, 3128,
    3260, 3268, 3306, 3389, 3478, 3690, 4222, 4500, 4840, 5060, 5061, 5222, 5349, 5353, 5355, 5432, 5671,
    5672, 5683, 5900, 5985, 5986, 6379, 6443, 6653, 6667, 7547, 8008, 8080, 8443, 8883, 9092, 9100, 9200,
    11211, 20000, 27017, 44818, 47808,
))  # fmt: skip

EPHEMERAL_MIN = 32768

_DNS_OPCODES = (0, 4, 5)
_TLS_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_SERVER_HELLO = 2


def is_service_port(port: int) -> bool:
    return 0 < port < 1024 or port in SERVICE_PORTS


def port_role(port: int) -> int:
    """All these rules read of a port: 0 (port 0), 1 a DNS port, 2 another service port, 3 an ephemeral port,
    4 any other. A port swapped for one of the same role leaves every flow's orientation as it was (what
    ``netgptd.train.leakage`` relies on when it randomises client ports)."""
    if port in DNS_PORTS:
        return 1
    if is_service_port(port):
        return 2
    if port >= EPHEMERAL_MIN:
        return 3
    return 4 if port else 0


def _payload_says(proto: int, sport: int, dport: int, payload: bytes) -> bool | None:
    """True: the payload is a request (its sender the client); False: a reply; None: it does not say."""
    if sport in DNS_PORTS or dport in DNS_PORTS:
        flags = 4 if proto == PROTO_TCP else 2  # the flags byte, behind TCP's length prefix
        # A whole 12-byte header that looks like DNS (opcode QUERY, NOTIFY or UPDATE, under 256 questions):
        # DNSCrypt and other traffic on these ports is not read as DNS.
        if len(payload) >= flags + 10 and (payload[flags] >> 3) & 0x0F in _DNS_OPCODES and payload[flags + 2] == 0:
            return not payload[flags] & 0x80
    if payload.startswith(b"HTTP/1."):
        return False
    if payload.startswith(HTTP_METHODS):
        return True
    if proto == PROTO_TCP and len(payload) >= 6 and payload[0] == _TLS_HANDSHAKE and payload[1] == 3:
        if payload[5] == _CLIENT_HELLO:
            return True
        if payload[5] == _SERVER_HELLO:
            return False
    return None


def _ports_say(sport: int, dport: int) -> bool | None:
    """True: the source port is the client's; False: the destination port is; None: the ports do not say."""
    src_service, dst_service = is_service_port(sport), is_service_port(dport)
    if src_service != dst_service:
        return dst_service
    if not src_service:
        src_ephemeral, dst_ephemeral = sport >= EPHEMERAL_MIN, dport >= EPHEMERAL_MIN
        if src_ephemeral and not dst_ephemeral and dport:
            return True
        if dst_ephemeral and not src_ephemeral and sport:
            return False
    return None


def client_is_src(proto: int, tcp_flags: int, sport: int, dport: int, payload: bytes) -> bool:
    """Whether the first packet's sender is the new flow's client (the rules: see the module docstring).

    ``payload``: the packet's transport payload (empty when it has none).
    """
    if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        return True
    if proto == PROTO_TCP:
        handshake = tcp_flags & (TCP_SYN | TCP_ACK)
        if handshake == TCP_SYN:
            return True
        if handshake == TCP_SYN | TCP_ACK:
            return False
    if payload and (proto == PROTO_TCP or proto == PROTO_UDP):
        said = _payload_says(proto, sport, dport, payload)
        if said is not None:
            return said
    said = _ports_say(sport, dport)
    return True if said is None else said
