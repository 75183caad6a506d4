"""Which side of a new flow is the client (netgptd.flow.direction), rule by rule, and on real captures that
start with the server's packets."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from netgptd.capture.file_source import PcapFileSource
from netgptd.decode.decoder import decode
from netgptd.decode.packet import PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN
from netgptd.flow.direction import SERVICE_PORTS, client_is_src, is_service_port
from netgptd.flow.table import Flow, FlowTable
from netgptd.synth.frames import addr

REPO = Path(__file__).resolve().parents[1]
SYN, SYN_ACK, ACK, PSH_ACK = TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_PSH | TCP_ACK


def dns_header(qr: bool, opcode: int = 0, questions: int = 1) -> bytes:
    flags = (0x8000 if qr else 0) | opcode << 11 | 0x0100
    return struct.pack("!HHHHHH", 0x1234, flags, questions, 1 if qr else 0, 0, 0)


def tls_handshake(kind: int) -> bytes:
    return bytes((0x16, 3, 1, 0, 60, kind, 0, 0, 56, 3, 3))


# -- rule 1: the TCP handshake ----------------------------------------------------------------------


def test_a_syn_comes_from_the_client_whatever_its_ports_and_payload() -> None:
    assert client_is_src(PROTO_TCP, SYN, 443, 50000, b"")
    assert client_is_src(PROTO_TCP, SYN, 80, 40000, b"HTTP/1.1 200 OK\r\n")  # TCP Fast Open data


def test_a_syn_ack_comes_from_the_server_whatever_its_ports_and_payload() -> None:
    assert not client_is_src(PROTO_TCP, SYN_ACK, 50000, 443, b"")
    assert not client_is_src(PROTO_TCP, SYN_ACK, 50000, 80, b"GET / HTTP/1.1\r\n")


# -- rule 2: the first payload ----------------------------------------------------------------------


@pytest.mark.parametrize("port", [53, 5353, 5355])
def test_dns_replies_come_from_the_server_and_queries_from_the_client(port: int) -> None:
    # UDP: an answer from the server's port, and one sent from a high port too (the QR bit decides, not the port)
    assert not client_is_src(PROTO_UDP, 0, port, 40000, dns_header(qr=True))
    assert not client_is_src(PROTO_UDP, 0, 40000, port, dns_header(qr=True))
    assert client_is_src(PROTO_UDP, 0, 40000, port, dns_header(qr=False))
    assert client_is_src(PROTO_UDP, 0, port, 40000, dns_header(qr=False))  # a query from a service port
    # TCP: behind the 2-byte length prefix
    reply = struct.pack("!H", 40) + dns_header(qr=True)
    query = struct.pack("!H", 40) + dns_header(qr=False)
    assert not client_is_src(PROTO_TCP, PSH_ACK, 40000, port, reply)
    assert client_is_src(PROTO_TCP, PSH_ACK, port, 40000, query)


def test_what_only_looks_like_dns_is_left_to_the_ports() -> None:
    short = dns_header(qr=True)[:11]
    assert client_is_src(PROTO_UDP, 0, 40000, 53, short)  # no whole header: port 53 is the server's
    assert client_is_src(PROTO_TCP, ACK, 40000, 53, dns_header(qr=True)[:12])  # TCP: 2 bytes short
    for not_dns in (dns_header(qr=True, opcode=13), dns_header(qr=True, questions=0x701B)):  # DNSCrypt-like
        assert client_is_src(PROTO_UDP, 0, 40000, 5353, not_dns)
    assert not client_is_src(PROTO_UDP, 0, 40000, 53, dns_header(qr=True, opcode=5))  # UPDATE's reply
    assert client_is_src(PROTO_UDP, 0, 40000, 9999, dns_header(qr=True))  # not a DNS port: not read as DNS


def test_http_responses_come_from_the_server_and_requests_from_the_client() -> None:
    assert not client_is_src(PROTO_TCP, PSH_ACK, 40000, 8081, b"HTTP/1.1 200 OK\r\n")
    assert not client_is_src(PROTO_UDP, 0, 40000, 50000, b"HTTP/1.1 200 OK\r\n")  # an SSDP answer
    assert client_is_src(PROTO_TCP, PSH_ACK, 80, 40000, b"GET / HTTP/1.1\r\n")
    assert client_is_src(PROTO_TCP, PSH_ACK, 8080, 50000, b"OPTIONS * HTTP/1.1\r\n")
    assert client_is_src(PROTO_TCP, PSH_ACK, 40000, 80, b"HTTP/1")  # short of "HTTP/1.": the ports decide


def test_tls_hellos_say_who_is_who() -> None:
    assert not client_is_src(PROTO_TCP, PSH_ACK, 40000, 8443, tls_handshake(2))  # ServerHello
    assert client_is_src(PROTO_TCP, PSH_ACK, 443, 50000, tls_handshake(1))  # ClientHello
    assert client_is_src(PROTO_TCP, PSH_ACK, 50000, 443, tls_handshake(11))  # Certificate: the ports decide
    assert not client_is_src(PROTO_TCP, PSH_ACK, 443, 50000, tls_handshake(1)[:5])  # no handshake type byte
    assert not client_is_src(PROTO_UDP, 0, 443, 50000, tls_handshake(1))  # TLS records only over TCP


# -- rule 3: the ports' roles -----------------------------------------------------------------------


def test_a_service_port_facing_another_port_is_the_servers() -> None:
    for service in (22, 443, 1023, 3306, 5432, 8080, 44818):
        for other in (1024, 5000, 40000, 60000):
            assert not client_is_src(PROTO_TCP, ACK, service, other, b"")
            assert client_is_src(PROTO_TCP, ACK, other, service, b"")
    assert not client_is_src(PROTO_UDP, 0, 123, 40000, b"\x1c")
    assert not client_is_src(PROTO_SCTP, 0, 2905, 33000, b"x")  # SCTP has ports too


def test_an_ephemeral_port_facing_a_lower_one_is_the_clients() -> None:
    assert client_is_src(PROTO_TCP, ACK, 50000, 9999, b"")
    assert not client_is_src(PROTO_TCP, ACK, 9999, 50000, b"")
    assert not client_is_src(PROTO_UDP, 0, 32767, 32768, b"x")  # the boundary: 32768 is ephemeral
    assert not client_is_src(PROTO_UDP, 0, 3074, 33441, b"x")


# -- rule 4: the first sender -----------------------------------------------------------------------


@pytest.mark.parametrize(("sport", "dport"), [(53, 123), (5060, 5060), (40000, 50000), (5000, 6000), (0, 0),
                                              (0, 40000), (40000, 0)])  # fmt: skip
def test_when_nothing_decides_the_first_sender_is_the_client(sport: int, dport: int) -> None:
    assert client_is_src(PROTO_UDP, 0, sport, dport, b"")
    assert client_is_src(PROTO_UDP, 0, dport, sport, b"")
    assert client_is_src(PROTO_TCP, ACK | TCP_FIN, sport, dport, b"\x00" * 20)


def test_icmp_keeps_its_first_sender() -> None:
    assert client_is_src(PROTO_ICMP, 0, 0, 0, b"")  # an echo reply first: still its sender
    assert client_is_src(PROTO_ICMP, 0, 3, 3, b"HTTP/1.1 200 OK")  # type/code are no ports


def test_malformed_payloads_never_raise() -> None:
    for payload in (b"\x16", b"\x16\x03", b"\x00\x00", b"\xff" * 13, b"H", b"HTTP/", bytes(100)):
        for proto in (PROTO_TCP, PROTO_UDP):
            for sport, dport in ((53, 40000), (40000, 443), (40000, 50000)):
                assert isinstance(client_is_src(proto, ACK, sport, dport, payload), bool)


def test_service_ports_are_the_hot_paths() -> None:
    """``hotpath/src/direction.rs`` keeps its own copy of the table (the flow tables' differential test in
    test_hotpath catches a rule that differs, only where a capture shows it)."""
    source = (REPO / "hotpath" / "src" / "direction.rs").read_text()
    table = re.search(r"const SERVICE_PORTS: \[u16; (\d+)\] = \[([^\]]*)\]", source)
    assert table is not None
    ports = [int(p) for p in table.group(2).replace(",", " ").split()]
    assert ports == sorted(SERVICE_PORTS) and int(table.group(1)) == len(ports)
    assert all(port >= 1024 for port in ports) and is_service_port(1) and not is_service_port(0)


# -- real captures that start with the server's packets ----------------------------------------------


def flows_of(path: Path) -> list[Flow]:
    table = FlowTable()
    for record in PcapFileSource(path).packets():
        table.add(decode(record))
    return table.flush()


def endpoints(flow: Flow) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    return (flow.client_ip, flow.client_port), (flow.server_ip, flow.server_port)


@pytest.mark.parametrize(("capture", "client", "server"), [
    # UDP DNS: the capture's second flow starts with the answer from port 53
    ("dns.pcap", ("192.168.170.8", 32795), ("192.168.170.20", 53)),
    # TCP mid-stream: the first segment is the server's "HTTP/1.1 200 OK", the handshake was before the capture
    ("mpeg-dash.pcap", ("192.168.2.105", 59144), ("54.161.101.85", 80)),
    # QUIC seen from the server's side only
    ("gquic_only_from_server.pcap", ("10.189.122.71", 60524), ("213.202.7.26", 443)),
])  # fmt: skip
def test_captures_starting_with_the_servers_packets(corpus: Path, capture: str, client: tuple, server: tuple) -> None:
    flows = flows_of(corpus / "ndpi" / "pcap" / capture)
    wanted = ((addr(client[0]), client[1]), (addr(server[0]), server[1]))
    ours = sorted((f for f in flows if set(endpoints(f)) == set(wanted)), key=lambda f: f.start_ns)
    assert ours and all(endpoints(f) == wanted for f in ours)  # dns.pcap: two, split by the idle timeout
    assert ours[0].pkts_toclient > 0  # the first packet, the server's, went to the client
