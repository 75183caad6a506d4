"""The embedded demo capture: a few minutes of a small office, built from code.

Deterministic (seeded), so ``netgptd demo`` prints the same summary on
every machine: web browsing over HTTP and TLS with their DNS look-ups,
NTP, pings, an IPv6 DNS exchange, and one host sweeping ports (the kind
of traffic the rule detectors and the model will name).
"""

from __future__ import annotations

import random
from pathlib import Path

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.decode.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from netgptd.synth.frames import ethernet, icmp_echo, ip, tcp, udp
from netgptd.synth.pcap_writer import write_pcapng

NS = 1_000_000_000
START_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z

OFFICE = [f"192.168.10.{i}" for i in range(20, 32)]
RESOLVER = "192.168.10.1"
WEB = ["93.184.216.34", "151.101.1.69", "104.16.132.229", "142.250.74.46"]
SCANNER = "192.168.10.66"


class _Timeline:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def add(self, ts_ns: int, packet: bytes) -> None:
        self.frames.append((ts_ns, ethernet(packet, pad=True)))

    def records(self) -> list[PacketRecord]:
        self.frames.sort(key=lambda item: item[0])
        return [PacketRecord(ts, LINKTYPE_ETHERNET, frame, len(frame)) for ts, frame in self.frames]


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def _dns(t: _Timeline, ts: int, client: str, server: str, port: int, name: str, rng: random.Random) -> None:
    ident = rng.randrange(65536)
    question = _dns_name(name) + b"\x00\x01\x00\x01"
    query = ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes(rng.randrange(1, 255) for _ in range(4))
    reply = ident.to_bytes(2, "big") + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer
    t.add(ts, ip(client, server, PROTO_UDP, udp(client, server, port, 53, query)))
    t.add(ts + 2_000_000, ip(server, client, PROTO_UDP, udp(server, client, 53, port, reply)))


def _tcp_session(t: _Timeline, ts: int, client: str, server: str, cport: int, sport: int,
                 request: bytes, response: bytes, rtt: int) -> None:  # fmt: skip
    """Handshake, one request and its response in MSS-sized segments, FIN both ways."""
    cseq, sseq = 1000, 5000

    def seg(when: int, src: str, dst: str, sp: int, dp: int, flags: str, seq: int, ack: int, data: bytes = b"") -> None:
        t.add(when, ip(src, dst, PROTO_TCP, tcp(src, dst, sp, dp, flags, data, seq=seq, ack=ack)))

    seg(ts, client, server, cport, sport, "S", cseq, 0)
    seg(ts + rtt, server, client, sport, cport, "SA", sseq, cseq + 1)
    seg(ts + rtt + 100_000, client, server, cport, sport, "A", cseq + 1, sseq + 1)
    seg(ts + rtt + 200_000, client, server, cport, sport, "PA", cseq + 1, sseq + 1, request)
    cseq += 1 + len(request)
    when = ts + 2 * rtt
    sent = 0
    while sent < len(response):
        chunk = response[sent : sent + 1400]
        seg(when, server, client, sport, cport, "PA", sseq + 1 + sent, cseq, chunk)
        sent += len(chunk)
        when += 300_000
    seg(when, client, server, cport, sport, "A", cseq, sseq + 1 + sent)
    seg(when + 1_000_000, client, server, cport, sport, "FA", cseq, sseq + 1 + sent)
    seg(when + 1_000_000 + rtt, server, client, sport, cport, "FA", sseq + 1 + sent, cseq + 1)
    seg(when + 1_100_000 + rtt, client, server, cport, sport, "A", cseq + 1, sseq + 2 + sent)


def _client_hello(name: str, rng: random.Random) -> bytes:
    sni = name.encode()
    extension = b"\x00\x00" + (len(sni) + 5).to_bytes(2, "big") + (len(sni) + 3).to_bytes(2, "big") + b"\x00" + len(sni).to_bytes(2, "big") + sni
    body = b"\x03\x03" + bytes(rng.randrange(256) for _ in range(32)) + b"\x00\x00\x02\x13\x01\x01\x00" + len(extension).to_bytes(2, "big") + extension
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def demo_records(seed: int = 7, minutes: int = 5) -> list[PacketRecord]:
    rng = random.Random(seed)
    t = _Timeline()
    sites = ["example.com", "news.example.org", "cdn.example.net", "mail.example.com"]
    for i in range(minutes * 40):  # a visit every 1.5 s or so
        ts = START_NS + int(i * 1.5 * NS) + rng.randrange(NS // 2)
        host = rng.choice(OFFICE)
        site = rng.randrange(len(sites))
        cport = rng.randrange(32768, 61000)
        _dns(t, ts, host, RESOLVER, rng.randrange(32768, 61000), sites[site], rng)
        rtt = rng.randrange(5, 40) * 1_000_000
        if rng.random() < 0.3:
            request = f"GET /{i} HTTP/1.1\r\nHost: {sites[site]}\r\nUser-Agent: demo\r\n\r\n".encode()
            response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2000\r\n\r\n" + bytes(2000)
            _tcp_session(t, ts + 10_000_000, host, WEB[site], cport, 80, request, response, rtt)
        else:
            response = b"\x16\x03\x03" + bytes(rng.randrange(256) for _ in range(rng.randrange(1500, 6000)))
            _tcp_session(t, ts + 10_000_000, host, WEB[site], cport, 443, _client_hello(sites[site], rng), response, rtt)
    for minute in range(minutes):  # NTP and a ping from each host, once a minute
        for n, host in enumerate(OFFICE):
            ts = START_NS + minute * 60 * NS + n * 200_000_000
            ntp = b"\x23" + bytes(47)
            t.add(ts, ip(host, "192.168.10.1", PROTO_UDP, udp(host, "192.168.10.1", 123, 123, ntp)))
            t.add(ts + 1_000_000, ip("192.168.10.1", host, PROTO_UDP, udp("192.168.10.1", host, 123, 123, b"\x24" + bytes(47))))
            t.add(ts + 5_000_000, ip(host, RESOLVER, PROTO_ICMP, icmp_echo(n, minute, b"ping")))
            t.add(ts + 5_400_000, ip(RESOLVER, host, PROTO_ICMP, icmp_echo(n, minute, b"ping", reply=True)))
    ts = START_NS + 90 * NS
    _dns(t, ts, "fd00::20", "fd00::1", 40000, "example.com", rng)
    for port in range(1, 1025):  # a SYN sweep of one office host: mostly RSTs back
        when = ts + port * 2_000_000
        victim = OFFICE[0]
        t.add(when, ip(SCANNER, victim, PROTO_TCP, tcp(SCANNER, victim, 45000, port, "S", seq=77)))
        t.add(when + 200_000, ip(victim, SCANNER, PROTO_TCP, tcp(victim, SCANNER, port, 45000, "RA", ack=78)))
    return t.records()


def write_demo_capture(path: Path) -> Path:
    with open(path, "wb") as stream:
        write_pcapng(stream, demo_records())
    return path
