"""Traffic generation (NetGPT's third task): flows sampled from the LM head, written as a capture.

The LM learnt ``[GEN] [APP=x] [PORT] hi lo`` then, per packet, ``[C2S]|[S2C]``,
the anonymised header fields (``tokenizer.anonymise``), ``[PAY]`` and the
payload bytes, then ``[EOS]``. Generation samples such sequences from the
prompt ``[GEN] [APP=x]`` (temperature, top-k, a seeded numpy Generator,
all flows of a batch in lock-step, the whole sequence recomputed at each
step: the model is tiny), keeping to that grammar while sampling where it
is cheap to: the port is two bytes, the client's packet comes first, a
packet's header is an IPv4 header's kept fields up to the length they
announce (version 4, TCP or UDP, one protocol per flow, IP options short
enough to leave the transport fields in the header window), packets after the
first carry payload where the tokenizer reads only those
(``payload_packets``), payloads and packet counts stay within the
tokenizer's limits, and no prompt token appears inside.

Each sequence is then turned back into packets: IPv4 + TCP/UDP headers are
rebuilt from the kept fields, and what anonymisation removed is made up
(client 10.77.0.x, server 10.77.1.x, a random client port, TTL 64,
sequential TCP sequence and acknowledgement numbers, IP IDs); lengths and
checksums are computed by ``netgptd.synth.frames``. A payload that filled
the tokenizer's window, or that [EOS] ended (a flow cut at ``max_tokens``),
was cut there, so it is extended (random bytes) to the length its header
announces; a shorter one is whole and the length fields follow it. What
cannot make a valid packet is repaired or dropped, and counted; every frame
written is decoded once more before it is, so a capture never holds a
broken one.

numpy and onnxruntime only, never torch.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET, decode
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_SYN, DecodeError, NotIP
from netgptd.model.bundle import INPUTS, LM_FILE, LM_OUTPUTS, Bundle, BundleError
from netgptd.model.session import CPU, CUDA, open_session
from netgptd.model.tokenizer import C2S, EOS, FIRST_APP_TOKEN, GEN, PAY, PORT, S2C, TokenizerConfig, vocab_size
from netgptd.synth import frames
from netgptd.synth.pcap_writer import write_pcap

BATCH = 64
MTU = 1500
IPV4_FIELDS = 7  # version/IHL + TOS, total length, flags + fragment offset, protocol: the options follow
CLIENT_NET, SERVER_NET = "10.77.0.", "10.77.1."
START_NS = 1_700_000_000 * 1_000_000_000  # the first flow's start (2023-11-14): fixed, so a seed gives one file
FLOW_GAP_NS = (2_000_000, 10_000_000)  # between flows, and (below) between a flow's packets: a few ms
PACKET_GAP_NS = (500_000, 5_000_000)
TCP_OPTION_SIZES = {2: 4, 3: 3, 4: 2, 8: 10}  # MSS, window scale, SACK permitted, timestamps

# Server ports of well-known applications, for sequences whose sampled port
# is 0 (the LM learnt port dropout); other applications take the LM's most
# likely non-zero port.
USUAL_PORTS = {
    "DNS": 53, "HTTP": 80, "TLS": 443, "QUIC": 443, "SSH": 22, "FTP": 21, "FTP_CONTROL": 21, "SMTP": 25, "POP3": 110,
    "IMAP": 143, "NTP": 123, "DHCP": 67, "SNMP": 161, "MDNS": 5353, "LLMNR": 5355, "SSDP": 1900, "NetBIOS": 137,
    "SMBv23": 445, "SMBv1": 445, "RDP": 3389, "MQTT": 1883, "Modbus": 502, "Redis": 6379, "Telnet": 23,
    "STUN": 3478, "SIP": 5060, "Syslog": 514, "TFTP": 69, "BitTorrent": 6881, "MySQL": 3306, "PostgreSQL": 5432,
}  # fmt: skip
# Applications carried over UDP: the protocol of a flow whose header does not say.
UDP_APPS = {"DNS", "QUIC", "NTP", "DHCP", "SNMP", "MDNS", "LLMNR", "SSDP", "NetBIOS", "STUN", "SIP", "Syslog", "TFTP"}

_START, _PORT, _DIRECTION, _HEADER, _PAYLOAD, _DONE = range(6)


class GenerationError(Exception):
    """Generation cannot start (no LM in the bundle, an unknown app); one readable line."""


# -- the LM ------------------------------------------------------------------------


class LanguageModel:
    """A bundle's LM head (``lm.onnx``): next-token logits for token rows."""

    def __init__(self, bundle: Bundle, prefer: Sequence[str] = (CUDA, CPU), threads: int = 1) -> None:
        self.bundle = bundle
        available = ort.get_available_providers()
        offered = [p for p in prefer if p in available] or [CPU]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime's warnings about unused providers
        self.session = open_session(bundle.lm_bytes(), options, offered, bundle, bundle.lm_file or Path(LM_FILE))
        self.vocab = vocab_size(bundle.apps)
        width = self.session.get_outputs()[0].shape[-1]
        if width != self.vocab:
            name = bundle.lm_file.name if bundle.lm_file else "lm"
            raise BundleError(f"{name} in {bundle.path}: logits have width {width}, its manifest's "
                              f"{len(bundle.apps)} apps make a vocabulary of {self.vocab}")  # fmt: skip
        positions = (bundle.manifest.get("shape") or {}).get("positions")
        self.max_tokens = min(bundle.tokenizer.max_tokens, int(positions)) if positions else bundle.tokenizer.max_tokens

    def next_logits(self, rows: np.ndarray) -> np.ndarray:
        """Logits of the token after each row (rows: int64 [batch, length], no padding)."""
        mask = np.ones_like(rows)
        (logits,) = self.session.run(list(LM_OUTPUTS), {INPUTS[0]: rows, INPUTS[1]: mask})
        return logits[:, -1, :].astype(np.float64)


# -- the grammar, while sampling ---------------------------------------------------


def header_length(header: bytes | bytearray, limit: int) -> int | None:
    """How many bytes a packet's anonymised header has, in the canonical field order
    (``tokenizer.anonymise``) and cut at ``limit``; ``None`` while the bytes so far
    do not tell yet. Protocols other than TCP and UDP end after the IPv4 fields."""
    if len(header) >= limit:
        return limit
    if len(header) < IPV4_FIELDS:
        return None
    base = IPV4_FIELDS + max(0, (header[0] & 0x0F) * 4 - 20)
    proto = header[6]
    if proto == PROTO_UDP:
        return min(base + 2, limit)
    if proto != PROTO_TCP:
        return min(base, limit)
    if base >= limit:
        return limit
    if len(header) <= base:
        return None
    return min(base + 6 + max(0, (header[base] >> 4) * 4 - 20), limit)


@dataclass
class _Row:
    """Where one sequence being sampled stands in the grammar."""

    tokens: list[int]
    state: int = _START
    count: int = 0  # port bytes, or bytes of the current header or payload
    packets: int = 0
    header: bytearray = field(default_factory=bytearray)
    proto: int | None = None  # fixed by the flow's first packet


class Grammar:
    """The token masks that keep sampled sequences flow-shaped."""

    def __init__(self, config: TokenizerConfig, vocab: int, max_tokens: int) -> None:
        self.config = config
        self.vocab = vocab
        self.max_tokens = max_tokens

        def mask(tokens: Sequence[int] | range) -> np.ndarray:
            m = np.zeros(vocab, dtype=bool)
            m[list(tokens)] = True
            return m

        self.only = {t: mask([t]) for t in (PORT, PAY, EOS, C2S)}
        self.byte = mask(range(256))
        self.byte_or_pay = mask([*range(256), PAY])
        self.next_packet = mask([C2S, S2C, EOS])
        self.byte_or_next = mask([*range(256), C2S, S2C, EOS])
        self.byte_or_eos = mask([*range(256), EOS])
        # IPv4, with no more options than leave the TCP data offset and flags inside the header window
        longest = max(5, min(15, 5 + (config.header_bytes - IPV4_FIELDS - 2) // 4))
        self.version = mask(range(0x45, 0x41 + longest))
        self.protos = {None: mask([PROTO_TCP, PROTO_UDP]), PROTO_TCP: mask([PROTO_TCP]), PROTO_UDP: mask([PROTO_UDP])}
        self.data_offset = mask(range(0x50, 0x100))  # TCP data offset 5 to 15 words

    def allowed(self, row: _Row) -> np.ndarray:
        if len(row.tokens) >= self.max_tokens - 1:
            return self.only[EOS]
        if row.state == _START:
            return self.only[PORT]
        if row.state == _PORT:
            return self.byte
        if row.state == _DIRECTION:
            return self.only[C2S] if row.packets == 0 else self.next_packet  # the client speaks first
        if row.state == _HEADER:
            return self._header(row)
        more = row.packets < self.config.packets
        if row.count == 0 and row.packets > 1 and self.config.payload_packets:
            return self.byte  # after the first packet, the flow table keeps only packets with payload
        if row.count >= self.config.payload_bytes:
            return self.next_packet if more else self.only[EOS]
        return self.byte_or_next if more else self.byte_or_eos

    def _header(self, row: _Row) -> np.ndarray:
        header, at = row.header, len(row.header)
        expected = header_length(header, self.config.header_bytes)
        if expected is not None and at >= expected:
            return self.only[PAY]
        if at == 0:
            return self.version
        if at == 6:
            return self.protos[row.proto]
        base = IPV4_FIELDS + (header[0] & 0x0F) * 4 - 20
        if at == base and header[6] == PROTO_TCP:
            return self.data_offset
        return self.byte

    def advance(self, row: _Row, token: int) -> None:
        row.tokens.append(token)
        if token == EOS:
            row.state = _DONE
        elif row.state == _START:
            row.state, row.count = _PORT, 0
        elif row.state == _PORT:
            row.count += 1
            if row.count == 2:
                row.state = _DIRECTION
        elif token in (C2S, S2C):
            row.state, row.packets, row.header = _HEADER, row.packets + 1, bytearray()
        elif token == PAY:
            if row.proto is None and len(row.header) > 6:
                row.proto = row.header[6]
            row.state, row.count = _PAYLOAD, 0
        elif row.state == _HEADER:
            row.header.append(token)
        else:
            row.count += 1


def _sample(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int,
            rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """One token per row from ``logits`` restricted to ``allowed`` (both [rows, vocab])."""
    logits = np.where(allowed, logits, -np.inf)
    if temperature <= 0:
        return logits.argmax(axis=1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[1]:
        kth = np.partition(logits, -top_k, axis=1)[:, -top_k][:, None]
        logits = np.where(logits >= kth, logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(len(logits))[:, None] * cumulative[:, -1:]
    picks = (cumulative <= draws).sum(axis=1)
    return np.minimum(picks, logits.shape[1] - 1)


def sample_sequences(lm: LanguageModel, app: str, count: int, temperature: float = 1.0, top_k: int = 0,
                     rng: np.random.Generator | None = None, batch: int = BATCH) -> list[list[int]]:  # fmt: skip
    """``count`` token sequences ``[GEN] [APP=app] [PORT] ... [EOS]`` sampled under the grammar."""
    rng = rng if rng is not None else np.random.default_rng()
    grammar = Grammar(lm.bundle.tokenizer, lm.vocab, lm.max_tokens)
    prompt = [GEN, FIRST_APP_TOKEN + lm.bundle.apps.index(app)]
    out: list[list[int]] = []
    for start in range(0, count, batch):
        rows = [_Row(list(prompt), state=_START) for _ in range(min(batch, count - start))]
        active = list(range(len(rows)))
        while active:
            ids = np.asarray([rows[i].tokens for i in active], dtype=np.int64)
            allowed = np.stack([grammar.allowed(rows[i]) for i in active])
            for i, token in zip(active, _sample(lm.next_logits(ids), allowed, temperature, top_k, rng)):
                grammar.advance(rows[i], int(token))
            active = [i for i in active if rows[i].state != _DONE]
        out += [r.tokens for r in rows]
    return out


def usual_port(lm: LanguageModel, app: str) -> int:
    """The server port of ``app`` for sequences that sampled port 0: the well-known
    one, else the LM's most likely non-zero port (greedy, byte by byte)."""
    if app in USUAL_PORTS:
        return USUAL_PORTS[app]
    prompt = [GEN, FIRST_APP_TOKEN + lm.bundle.apps.index(app), PORT]
    hi = int(lm.next_logits(np.asarray([prompt], dtype=np.int64))[0, :256].argmax())
    lo_logits = lm.next_logits(np.asarray([prompt + [hi]], dtype=np.int64))[0, :256]
    if hi == 0:
        lo_logits[0] = -np.inf
    return hi << 8 | int(lo_logits.argmax())


# -- from tokens to packets --------------------------------------------------------


@dataclass
class PacketFields:
    """One generated packet's kept fields, repaired: what ``build_flow`` needs."""

    toserver: bool
    proto: int
    tos: int
    dont_fragment: bool
    ip_options: bytes
    payload: bytes  # as generated
    tcp_flags: int = 0
    window: int = 0
    urgent: int = 0
    tcp_options: bytes = b""
    fill: int = 0  # bytes the payload is extended by (made up): it was cut where generation ended

    @property
    def length(self) -> int:
        """The payload's length on the wire."""
        return len(self.payload) + self.fill


@dataclass
class ParsedFlow:
    port: int  # 0: the sampled port was 0 (or missing), the app's usual port is used
    packets: list[PacketFields]
    repairs: Counter[str]


def _options(prefix: bytes, length: int, sizes: dict[int, int] | None = None) -> tuple[bytes, bool]:
    """An option area of ``length`` bytes (TCP and IPv4 share the layout) from the
    ``prefix`` generated, which the tokenizer's header window may have cut: an
    option cut after its kind gets its usual size from ``sizes``, a cut option
    is completed with zero bytes (a cut timestamp gets zero values, as
    anonymisation writes them), and the area is ended (end-of-list) before an
    option that does not fit. Returns (area, repaired): completing what the
    window cut is not a repair, ending the list before a malformed option is."""
    area = bytearray(prefix[:length]) + bytes(max(0, length - len(prefix)))
    pos = 0
    while pos < length:
        kind = area[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= len(prefix) and pos + 1 < length and sizes and kind in sizes:
            area[pos + 1] = sizes[kind]  # the window cut this option after its kind
        size = area[pos + 1] if pos + 1 < length else 0
        if size < 2 or pos + size > length:
            area[pos:] = bytes(length - pos)
            return bytes(area), pos + 1 < len(prefix)
        pos += size
    if pos < length and any(area[pos:]):
        area[pos:] = bytes(length - pos)  # after end-of-list: padding
        return bytes(area), True
    return bytes(area), False


def _packet(toserver: bool, header: bytes, payload: bytes, config: TokenizerConfig, proto: int | None,
            repairs: Counter[str], last: bool = False) -> PacketFields | None:  # fmt: skip
    """The fields of one packet from its header bytes (canonical order), or None to drop it.

    A payload is taken as cut, and extended (``fill``) to the length its
    header announces, when it fills the tokenizer's window or when it is
    the ``last`` of a sequence that ended there ([EOS] or ``max_tokens``:
    a flow cut at ``max_tokens`` is what the LM learnt [EOS] after a partial
    payload from); otherwise it is whole and the length fields follow it."""
    if len(header) < IPV4_FIELDS or header[0] >> 4 != 4 or header[0] & 0x0F < 5:
        repairs["packet_not_ipv4"] += 1
        return None
    own = header[6]
    if own not in (PROTO_TCP, PROTO_UDP) or (proto is not None and own != proto):
        repairs["packet_wrong_protocol"] += 1
        return None
    ihl = (header[0] & 0x0F) * 4
    total, frag_word = struct.unpack_from("!HH", header, 2)
    if frag_word & 0xBFFF:  # more fragments, an offset, or the reserved bit: keep DF only
        repairs["fragment_cleared"] += 1
    ip_options, changed = _options(header[IPV4_FIELDS:], ihl - 20)
    repairs["ip_options_fixed"] += changed
    rest = header[IPV4_FIELDS + ihl - 20 :]
    fields = PacketFields(toserver, own, header[1], bool(frag_word & 0x4000), ip_options, b"")
    if own == PROTO_TCP:
        if len(rest) < 2 or rest[0] >> 4 < 5:
            repairs["packet_bad_tcp_header"] += 1
            return None
        if len(rest) < 6:  # the header window cut the TCP fields: a full window, no urgent data
            repairs["tcp_header_filled"] += 1
            rest = rest[:2] + (rest[2:4] if len(rest) >= 4 else b"\xff\xff") + b"\0\0"
        fields.tcp_flags = rest[1]
        fields.window, fields.urgent = struct.unpack_from("!HH", rest, 2)
        fields.tcp_options, changed = _options(rest[6:], (rest[0] >> 4) * 4 - 20, TCP_OPTION_SIZES)
        repairs["tcp_options_fixed"] += changed
        l4 = 20 + len(fields.tcp_options)
    else:
        l4 = 8
    claimed = max(0, total - ihl - l4)
    room = max(0, MTU - ihl - l4)
    fields.payload = payload[:room]
    if (last or len(payload) >= config.payload_bytes) and claimed > len(payload):
        fields.fill = min(claimed, room) - len(fields.payload)
    if claimed != fields.length:
        repairs["length_fixed"] += 1
    return fields


def _fix_tcp_flags(packets: list[PacketFields], repairs: Counter[str]) -> None:
    """SYN only on each side's first segment (the client's without ACK, the server's with
    it), so that the flow table orients and keeps every flow as generated."""
    seen = {True: False, False: False}
    for p in packets:
        if p.proto != PROTO_TCP:
            continue
        flags = p.tcp_flags
        if p.tcp_flags & TCP_SYN:
            if seen[p.toserver]:
                flags &= ~TCP_SYN
            elif p.toserver:
                flags &= ~TCP_ACK
            else:
                flags |= TCP_ACK
        seen[p.toserver] = True
        if flags != p.tcp_flags:
            repairs["tcp_flags_fixed"] += 1
            p.tcp_flags = flags


def parse_sequence(tokens: Sequence[int], config: TokenizerConfig, default_proto: int = PROTO_TCP) -> ParsedFlow | None:
    """The packets of one generated sequence, repaired; None when none can be rebuilt.

    Tolerant of sequences the grammar did not shape (tests feed such): a
    token that has no place inside a flow ends it, packets beyond
    ``config.packets`` and packets cut before their payload are dropped,
    leading server-to-client packets too (the client speaks first), and a
    packet whose protocol differs from the flow's first packet is dropped.
    ``default_proto`` is the app's protocol, used only to pick which
    packets keep when the first packet's protocol is unreadable.
    """
    repairs: Counter[str] = Counter()
    i = 0
    while i < len(tokens) and (tokens[i] == GEN or tokens[i] >= FIRST_APP_TOKEN):
        i += 1
    port = 0
    if i + 2 < len(tokens) and tokens[i] == PORT and tokens[i + 1] < 256 and tokens[i + 2] < 256:
        port = tokens[i + 1] << 8 | tokens[i + 2]
        i += 3
    else:
        repairs["port_missing"] += 1
    raw: list[tuple[bool, bytearray, bytearray | None]] = []  # (to server, header, payload or None before [PAY])
    ended = True  # by [EOS] or the end of the tokens, not by a token out of place
    for token in tokens[i:]:
        if token == EOS:
            break
        if token in (C2S, S2C):
            raw.append((token == C2S, bytearray(), None))
        elif token == PAY and raw and raw[-1][2] is None:
            raw[-1] = (raw[-1][0], raw[-1][1], bytearray())
        elif token < 256 and raw:
            (raw[-1][1] if raw[-1][2] is None else raw[-1][2]).append(token)
        elif token < 256:
            repairs["stray_bytes"] += 1
        else:
            repairs["bad_token"] += 1
            ended = False
            break
    if len(raw) > config.packets:
        repairs["packets_cut"] += len(raw) - config.packets
        raw = raw[: config.packets]
    while raw and not raw[0][0]:
        repairs["leading_server_packet"] += 1
        raw.pop(0)
    first = next((bytes(h)[6] for _, h, p in raw if p is not None and len(h) >= IPV4_FIELDS), None)
    proto = first if first in (PROTO_TCP, PROTO_UDP) else default_proto
    packets: list[PacketFields] = []
    last = len(raw) - 1 if ended and not repairs["packets_cut"] else -1
    for k, (toserver, header, payload) in enumerate(raw):
        if payload is None:
            repairs["packet_unfinished"] += 1
            continue
        fields = _packet(toserver, bytes(header), bytes(payload), config, proto, repairs, last=k == last)
        if fields is not None:
            packets.append(fields)
    if packets and not packets[0].toserver:
        repairs["leading_server_packet"] += 1
        while packets and not packets[0].toserver:
            packets.pop(0)
    if not packets:
        return None
    _fix_tcp_flags(packets, repairs)
    return ParsedFlow(port, packets, +repairs)


@dataclass
class Endpoints:
    client: str
    server: str
    client_port: int
    server_port: int


def build_flow(flow: ParsedFlow, ends: Endpoints, start_ns: int, rng: np.random.Generator) -> list[PacketRecord]:
    """The flow's Ethernet frames, every length and checksum computed, timestamps a few ms apart;
    payloads cut where generation ended are extended with random bytes (zeros would stand out
    where a classifier reads them, and most cut payloads are encrypted or compressed)."""
    seq = {True: int(rng.integers(1 << 32)), False: int(rng.integers(1 << 32))}
    ident = {True: int(rng.integers(1 << 16)), False: int(rng.integers(1 << 16))}
    records, ts = [], start_ns
    for p in flow.packets:
        payload = p.payload + rng.bytes(p.fill)
        src, dst = (ends.client, ends.server) if p.toserver else (ends.server, ends.client)
        sport, dport = (ends.client_port, ends.server_port) if p.toserver else (ends.server_port, ends.client_port)
        if p.proto == PROTO_TCP:
            ack = seq[not p.toserver] if p.tcp_flags & TCP_ACK else 0
            l4 = frames.tcp(src, dst, sport, dport, p.tcp_flags, payload, seq=seq[p.toserver], ack=ack,
                            window=p.window, options=p.tcp_options, urgent=p.urgent)  # fmt: skip
            seq[p.toserver] = (seq[p.toserver] + len(payload) + bool(p.tcp_flags & TCP_SYN)
                               + bool(p.tcp_flags & TCP_FIN)) & 0xFFFFFFFF  # fmt: skip
        else:
            l4 = frames.udp(src, dst, sport, dport, payload)
        packet = frames.ipv4(src, dst, p.proto, l4, ttl=64, ident=ident[p.toserver],
                             flags=frames.IP_DF if p.dont_fragment else 0, options=p.ip_options, tos=p.tos)  # fmt: skip
        ident[p.toserver] = (ident[p.toserver] + 1) & 0xFFFF
        frame = frames.ethernet(packet, src=frames.MAC_A if p.toserver else frames.MAC_B,
                                dst=frames.MAC_B if p.toserver else frames.MAC_A)  # fmt: skip
        records.append(PacketRecord(ts, LINKTYPE_ETHERNET, frame, len(frame)))
        ts += int(rng.integers(*PACKET_GAP_NS))
    return records


def _decodes_as(records: Sequence[PacketRecord], flow: ParsedFlow, ends: Endpoints) -> bool:
    """Every frame decodes back to the packet meant (no tunnel read into a payload, no error)."""
    want = {True: (frames.addr(ends.client), ends.client_port), False: (frames.addr(ends.server), ends.server_port)}
    for record, p in zip(records, flow.packets):
        try:
            got = decode(record)
        except (DecodeError, NotIP):
            return False
        if (got.proto, (got.src, got.sport), (got.dst, got.dport)) != (p.proto, want[p.toserver], want[not p.toserver]):
            return False
        if got.payload_len != p.length:
            return False
    return True


# -- the whole run -----------------------------------------------------------------


@dataclass
class GenerationResult:
    app: str
    records: list[PacketRecord] = field(default_factory=list)
    flows: list[Endpoints] = field(default_factory=list)  # one per flow written, in order
    sampled: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # sequences not written, by reason
    repaired: int = 0  # flows written after some repair
    usual_port: int = 0  # flows whose sampled server port was 0 (port dropout): on ``fallback_port`` instead
    fallback_port: int = 0
    repairs: Counter[str] = field(default_factory=Counter)  # the repairs made to them, by kind


def generate(bundle: Bundle, app: str, count: int, temperature: float = 1.0, top_k: int = 0, seed: int | None = 0,
             lm: LanguageModel | None = None, max_rounds: int = 3) -> GenerationResult:  # fmt: skip
    """``count`` flows of ``app`` sampled from the bundle's LM.

    Sequences that cannot be rebuilt are dropped and counted, and more are
    sampled for them, for at most ``max_rounds`` rounds: a weak model may
    give fewer flows than asked.
    """
    if app not in bundle.apps:
        raise GenerationError(f"unknown app {app!r}: {bundle.model_id} generates {', '.join(bundle.apps)}")
    if count < 0:
        raise GenerationError(f"cannot generate {count} flows")
    if bundle.lm_file is None:
        bundle.lm_bytes()  # raises the one-line "no language model" error
    lm = lm or LanguageModel(bundle)
    rng = np.random.default_rng(seed)
    default_proto = PROTO_UDP if app in UDP_APPS else PROTO_TCP
    fallback_port = usual_port(lm, app)
    result = GenerationResult(app, fallback_port=fallback_port)
    used: set[tuple[str, int]] = set()
    ts = START_NS
    for _ in range(max_rounds):
        missing = count - len(result.flows)
        if missing <= 0:
            break
        sequences = sample_sequences(lm, app, missing, temperature, top_k, rng)
        result.sampled += len(sequences)
        for tokens in sequences:
            parsed = parse_sequence(tokens, bundle.tokenizer, default_proto)
            if parsed is None:
                result.dropped["no_packet"] += 1
                continue
            k = len(result.flows)
            host = k % 254 + 1
            server_port = parsed.port or fallback_port
            client_port = server_port
            while client_port == server_port or (f"{CLIENT_NET}{host}", client_port) in used:
                client_port = int(rng.integers(1024, 65536))
            ends = Endpoints(f"{CLIENT_NET}{host}", f"{SERVER_NET}{host}", client_port, server_port)
            records = build_flow(parsed, ends, ts, rng)
            if not _decodes_as(records, parsed, ends):
                result.dropped["does_not_decode"] += 1
                continue
            used.add((ends.client, client_port))
            result.usual_port += parsed.port == 0
            if parsed.repairs:
                result.repaired += 1
                result.repairs.update(parsed.repairs)
            result.records += records
            result.flows.append(ends)
            ts = records[-1].ts_ns + int(rng.integers(*FLOW_GAP_NS))
    return result


def write_capture(path: str | Path, result: GenerationResult) -> Path:
    """The generated frames as a classic pcap (Ethernet, microsecond timestamps)."""
    path = Path(path)
    with open(path, "wb") as f:
        write_pcap(f, result.records, linktype=LINKTYPE_ETHERNET)
    return path
