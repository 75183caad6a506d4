"""Leakage check: the test captures again, with addresses and client ports randomised.

A model that learnt the networks of its captures (addresses, ephemeral
ports) instead of their traffic loses accuracy on such copies; NetGPT's
tokenizer leaves those fields out, so its predictions must not change.

``randomise_capture`` writes a copy of a capture in which every IPv4/IPv6
address of every IP layer (outer and inner of tunnels) goes through one
random bijection, and the client port of every TCP/UDP flow (the side that
is not the server, as the flow table orients the flow) through a random
permutation without fixed points that keeps each port's role
(``netgptd.flow.direction.port_role``), so the copy's flows are oriented
as the original's. Server ports, payloads, packet count,
timestamps and everything else stay. Checksums (IPv4 header, TCP, UDP,
ICMPv6, GRE) are updated incrementally (RFC 1624): a valid checksum stays
valid, and one that was wrong in the capture (offloading) stays wrong by
the same amount, even in truncated packets and IP fragments.

Not rewritten: frames that do not decode (left as they are, and counted),
addresses inside payloads (ICMP errors, SIP, DNS answers, ARP), SCTP ports
(their CRC32c covers them), and IPv6 routing headers.
"""

from __future__ import annotations

import random
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from netgptd.capture.file_source import PcapFileSource
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import UDP_GTPU, UDP_VXLAN, decode
from netgptd.decode.packet import PROTO_GRE, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, DecodeError, NotIP, Packet
from netgptd.flow.config import FlowConfig
from netgptd.flow.direction import port_role
from netgptd.flow.table import Flow, FlowTable
from netgptd.model.tokenizer import TokenizerConfig
from netgptd.synth.frames import checksum
from netgptd.synth.pcap_writer import Interface, write_pcapng
from netgptd.train.dataset import FlowExample, capture_files, collection_of, flows_of

# Ports the decoder reads to find tunnels: a client port never becomes (or stops being) one.
KEPT_PORTS = frozenset((0, UDP_VXLAN, UDP_GTPU))

# (field offset from the transport header, covers the pseudo-header?) of the checksums updated.
_L4_CHECKSUM = {PROTO_TCP: (16, True), PROTO_UDP: (6, True), PROTO_ICMPV6: (2, True)}
_GRE_CHECKSUM_BIT = 0x8000


@dataclass
class Randomisation:
    """What ``randomise_capture`` did: the maps, and what it left alone."""

    addresses: dict[bytes, bytes] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)  # client port p became ports[p]
    packets: int = 0
    rewritten: int = 0
    untouched: Counter[str] = field(default_factory=Counter)  # frames left as they were, by reason

    def address(self, address: bytes) -> bytes:
        return self.addresses.get(address, address)

    def port(self, port: int) -> int:
        return self.ports[port]


# -- checksums -----------------------------------------------------------------------


def _ones_sum(data: bytes) -> int:
    """The one's complement sum of ``data`` as 16-bit words (``checksum`` is its complement)."""
    return ~checksum(data) & 0xFFFF


def updated_checksum(old: int, old_cover: bytes, new_cover: bytes) -> int:
    """RFC 1624 eq. 3: the checksum ``old`` after the data it covers changed from
    ``old_cover`` to ``new_cover`` (both with the checksum field itself zeroed)."""
    total = (~old & 0xFFFF) + checksum(old_cover) + _ones_sum(new_cover)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _zeroed(data: bytes | bytearray, start: int, end: int, at: int) -> bytes:
    """``data[start:end]`` with the 16-bit field at ``at`` zeroed."""
    part = bytearray(data[start:end])
    rel = at - start
    if 0 <= rel and rel + 2 <= len(part):
        part[rel : rel + 2] = b"\0\0"
    return bytes(part)


# -- IP layers of a frame --------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    l3: int
    version: int
    proto: int
    l4: int  # -1 for a non-first fragment
    end: int  # end of the IP packet in the captured frame


def _ip_end(data: bytes, l3: int, version: int) -> int:
    if version == 4:
        return min(len(data), l3 + struct.unpack_from("!H", data, l3 + 2)[0])
    length = struct.unpack_from("!H", data, l3 + 4)[0]
    return min(len(data), l3 + 40 + length) if length else len(data)


def _layer(packet: Packet) -> _Layer:
    return _Layer(packet.l3_off, packet.ip_version, packet.proto, packet.l4_off,
                  _ip_end(packet.data, packet.l3_off, packet.ip_version))  # fmt: skip


def ip_layers(record: PacketRecord, inner: Packet) -> list[_Layer]:
    """The IP layers of a decoded frame, outermost first (one unless tunnelled).

    The decoder returns a tunnel's inner packet; cut just before it, the
    frame decodes to the layer around it (a tunnel whose inner packet does
    not decode is kept as the outer packet), and so on outwards.
    """
    layers = [_layer(inner)]
    cut = inner.l3_off
    while cut > 0:
        try:
            outer = decode(record._replace(data=record.data[:cut]))
        except (DecodeError, NotIP):
            break
        if outer.l3_off >= cut:
            break
        layers.append(_layer(outer._replace(data=record.data)))
        cut = outer.l3_off
    return layers[::-1]


# -- the bijections --------------------------------------------------------------------


def _random_address(rng: random.Random, version: int) -> bytes:
    if version == 4:  # unicast, not 0/8 or 127/8
        first = rng.choice([o for o in range(1, 224) if o != 127])
        return bytes((first,)) + rng.getrandbits(24).to_bytes(3, "big")
    return (0x2000 << 112 | rng.getrandbits(125)).to_bytes(16, "big")  # 2000::/3, global unicast


def _port_permutation(rng: random.Random) -> list[int]:
    """A permutation of the ports without fixed points (Sattolo's shuffle,
    one cycle per port role), except the ports the decoder reads, which stay."""
    roles: dict[int, list[int]] = {}
    for port in range(65536):
        if port not in KEPT_PORTS:
            roles.setdefault(port_role(port), []).append(port)
    table = list(range(65536))
    for movable in roles.values():
        cycle = movable[:]
        for i in range(len(cycle) - 1, 0, -1):
            j = rng.randrange(i)
            cycle[i], cycle[j] = cycle[j], cycle[i]
        # Sattolo's array is one cycle as a permutation of positions: p_i goes to p_cycle[i].
        for position, port in enumerate(movable):
            table[port] = cycle[position]
    return table


class _AddressMap:
    def __init__(self, rng: random.Random, into: dict[bytes, bytes]) -> None:
        self.rng = rng
        self.map = into
        self.used = set(into.values())

    def __call__(self, address: bytes) -> bytes:
        new = self.map.get(address)
        if new is None:
            version = 4 if len(address) == 4 else 6
            new = _random_address(self.rng, version)
            while new in self.used or new == address:
                new = _random_address(self.rng, version)
            self.map[address] = new
            self.used.add(new)
        return new


# -- rewriting ---------------------------------------------------------------------------


def _addresses_at(layer: _Layer) -> tuple[int, int]:
    return (layer.l3 + 12, 4) if layer.version == 4 else (layer.l3 + 8, 16)


def _fix_checksums(old: bytes, new: bytearray, layer: _Layer) -> None:
    at, size = _addresses_at(layer)
    if layer.l4 >= 0:
        spec = _L4_CHECKSUM.get(layer.proto)
        gre_flags = struct.unpack_from("!H", new, layer.l4)[0] if layer.proto == PROTO_GRE and layer.l4 + 6 <= len(new) else 0
        if gre_flags & _GRE_CHECKSUM_BIT:
            spec = (4, False)  # over the GRE header and payload, no pseudo-header
        if spec is not None and layer.l4 + spec[0] + 2 <= len(new):
            field_at = layer.l4 + spec[0]
            value = struct.unpack_from("!H", old, field_at)[0]
            if not (layer.proto == PROTO_UDP and value == 0):  # 0: no UDP checksum
                old_cover = _zeroed(old, layer.l4, layer.end, field_at)
                new_cover = _zeroed(new, layer.l4, layer.end, field_at)
                if spec[1]:  # the rest of the pseudo-header (length, protocol) is unchanged
                    old_cover = bytes(old[at : at + 2 * size]) + old_cover
                    new_cover = bytes(new[at : at + 2 * size]) + new_cover
                value = updated_checksum(value, old_cover, new_cover)
                if layer.proto == PROTO_UDP and value == 0:
                    value = 0xFFFF
                struct.pack_into("!H", new, field_at, value)
    if layer.version == 4:
        header_end = layer.l3 + (new[layer.l3] & 0x0F) * 4
        value = struct.unpack_from("!H", old, layer.l3 + 10)[0]
        value = updated_checksum(value, _zeroed(old, layer.l3, header_end, layer.l3 + 10),
                                 _zeroed(new, layer.l3, header_end, layer.l3 + 10))  # fmt: skip
        struct.pack_into("!H", new, layer.l3 + 10, value)


def _rewrite(record: PacketRecord, packet: Packet, client_port_at: int | None, addresses: _AddressMap,
             ports: list[int]) -> bytes:  # fmt: skip
    old = record.data
    new = bytearray(old)
    layers = ip_layers(record, packet)
    for layer in layers:
        at, size = _addresses_at(layer)
        for start in (at, at + size):
            new[start : start + size] = addresses(bytes(old[start : start + size]))
    if client_port_at is not None:
        port_at = packet.l4_off + client_port_at
        struct.pack_into("!H", new, port_at, ports[struct.unpack_from("!H", old, port_at)[0]])
    for layer in reversed(layers):  # inner checksums first: outer ones cover them
        _fix_checksums(old, new, layer)
    return bytes(new)


def _write(dst: Path, records: Sequence[PacketRecord]) -> None:
    """A pcapng file, interfaces renumbered from 0 in order of appearance."""
    ids: dict[int, int] = {}
    interfaces: list[Interface] = []
    out = []
    for record in records:
        if record.interface not in ids:
            ids[record.interface] = len(interfaces)
            interfaces.append(Interface(record.linktype))
        out.append(record._replace(interface=ids[record.interface]))
    with open(dst, "wb") as f:
        write_pcapng(f, out, interfaces)


def randomise_capture(src: Path, dst: Path, seed: int) -> Randomisation:
    """Write ``dst`` (pcapng): ``src`` with addresses and client ports randomised."""
    records = list(PcapFileSource(src).packets())
    # First the flow table on the original: which endpoint of each flow is its client.
    table = FlowTable(FlowConfig(first_packets=0))
    decoded: list[tuple[Packet, int | None] | str] = []
    for record in records:
        try:
            packet = decode(record)
        except (DecodeError, NotIP) as exc:
            decoded.append(exc.reason)  # type: ignore[attr-defined]
            continue
        flow = table.add(packet)
        client_port_at = None  # where the client's port is, from the transport header
        if flow is not None and packet.proto in (PROTO_TCP, PROTO_UDP) and packet.l4_off >= 0:
            # As the flow table orients a packet: to the server if it comes from the client's endpoint.
            toserver = packet.src == flow.client_ip and packet.sport == flow.client_port
            client_port_at = 0 if toserver else 2
        decoded.append((packet, client_port_at))
    rng = random.Random(seed)
    result = Randomisation(ports=_port_permutation(rng), packets=len(records))
    addresses = _AddressMap(rng, result.addresses)
    out = []
    for record, entry in zip(records, decoded):
        if isinstance(entry, str):
            result.untouched[entry] += 1
            out.append(record)
            continue
        packet, client_port_at = entry
        out.append(record._replace(data=_rewrite(record, packet, client_port_at, addresses, result.ports)))
        result.rewritten += 1
    _write(dst, out)
    return result


# -- the test set, randomised -------------------------------------------------------------


@dataclass
class RandomisedSet:
    """Test flows re-extracted from randomised copies of their captures.

    ``examples[i]`` is the randomised twin of ``test[indices[i]]`` (same label).
    """

    indices: list[int] = field(default_factory=list)
    examples: list[FlowExample] = field(default_factory=list)
    captures: int = 0
    unmatched: int = 0  # test flows whose twin was not found
    missing_captures: list[str] = field(default_factory=list)
    untouched_frames: Counter[str] = field(default_factory=Counter)


def capture_paths(roots: Iterable[Path]) -> dict[tuple[str, str], Path]:
    """(collection, file name) → path of every labelled capture under ``roots``."""
    return {(collection_of(p), p.name): p for p in capture_files(roots)}


def _flow_key(flow: Flow) -> tuple:
    return (flow.proto, flow.client_ip, flow.client_port, flow.server_ip, flow.server_port, flow.start_ns)


def _identity(packets: Iterable[tuple[bool, bytes]], server_port: int, proto: int) -> tuple:
    return (tuple(packets), server_port, proto)


def randomised_examples(test: Sequence[FlowExample], paths: Mapping[tuple[str, str], Path], config: TokenizerConfig,
                        seed: int = 0, workdir: Path | None = None) -> RandomisedSet:  # fmt: skip
    """Each test flow again, taken from a randomised copy of its capture.

    Flows are paired through the maps: a flow of the original capture
    becomes the flow of the copy with the mapped addresses and client port,
    the same server port and the same start time; a test flow is found in
    the original capture by its packets, so its label carries over.
    """
    result = RandomisedSet()
    by_capture: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(test):
        by_capture.setdefault((e.collection, e.capture), []).append(i)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for n, (key, indices) in enumerate(sorted(by_capture.items())):
            path = paths.get(key)
            if path is None:
                result.missing_captures.append("/".join(key))
                result.unmatched += len(indices)
                continue
            copy = Path(tmp) / f"{n}.pcapng"
            maps = randomise_capture(path, copy, seed * 100003 + n)
            result.captures += 1
            result.untouched_frames.update(maps.untouched)
            wanted: dict[tuple, list[int]] = {}
            for i in indices:
                e = test[i]
                wanted.setdefault(_identity(e.packets, e.server_port, e.proto), []).append(i)
            twins = {_flow_key(f): f for f in flows_of(copy, config)}
            for flow in flows_of(path, config):
                if not flow.first_packets:
                    continue
                identity = _identity(((t, d) for _, t, d in flow.first_packets), flow.server_port, flow.proto)
                waiting = wanted.get(identity)
                if not waiting:
                    continue
                twin = twins.get((flow.proto, maps.address(flow.client_ip), maps.port(flow.client_port),
                                  maps.address(flow.server_ip), flow.server_port, flow.start_ns))  # fmt: skip
                if twin is None or not twin.first_packets:
                    continue
                i = waiting.pop()
                e = test[i]
                packets = tuple((t, d) for _, t, d in twin.first_packets)
                result.indices.append(i)
                result.examples.append(FlowExample(e.capture, e.collection, packets, twin.server_port, twin.proto, e.label, e.source))
            result.unmatched += sum(len(v) for v in wanted.values())
    order = sorted(range(len(result.indices)), key=result.indices.__getitem__)
    result.indices = [result.indices[k] for k in order]
    result.examples = [result.examples[k] for k in order]
    return result
