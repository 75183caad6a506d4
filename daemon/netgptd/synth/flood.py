"""Spoofed-source floods as packet records: every packet from a new random address, so every packet a new flow.

Shared by the benchmarks (``bench/flood_soak.py``, ``bench/replay_throughput.py``) and the flood tests.
"""

from __future__ import annotations

import random
from typing import Iterator

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.synth.frames import Address, addr, ethernet, ip, tcp, udp

NS = 1_000_000_000


def spoofed_flood(count: int, rate: int, start_ns: int, syn_victim: Address, udp_victim: Address | None = None,
                  seed: int = 1) -> Iterator[PacketRecord]:  # fmt: skip
    """``count`` packets at ``rate`` per second from ``start_ns``: SYNs to ``syn_victim``:80, or, with a
    ``udp_victim``, SYNs and 32-byte UDP datagrams to ``udp_victim``:53 in turn (UDP first)."""
    rng = random.Random(seed)
    step = NS // rate
    syn_to, udp_to = addr(syn_victim), addr(udp_victim) if udp_victim is not None else None  # packed: no text parse
    for n in range(count):
        src = bytes((rng.randrange(1, 224),)) + rng.randbytes(3)
        sport = rng.randrange(1024, 65536)
        if udp_to is not None and n % 2 == 0:
            packet = ip(src, udp_to, PROTO_UDP, udp(src, udp_to, sport, 53, b"\0" * 32))
        else:
            packet = ip(src, syn_to, PROTO_TCP, tcp(src, syn_to, sport, 80, "S"))
        frame = ethernet(packet, pad=True)
        yield PacketRecord(start_ns + n * step, LINKTYPE_ETHERNET, frame, len(frame))
