"""NetGPT tokenizer: a flow's first packets as one sequence of byte tokens.

Shared by training and serving (pure, no I/O, no torch). After NetGPT:
every byte is a token (0-255); special tokens mark the task prompt, each
packet's direction and boundary, and the split between a packet's header
and its payload, so header and payload are separate patterns.

Anonymised: addresses, ports, IP ID, TTL / hop limit, IPv6 flow label,
checksums and TCP sequence numbers are left out and TCP timestamps zeroed,
so a model cannot key on a network's addresses or a capture's clocks. The client's
ephemeral port is dropped; the server's port (a property of the service)
enters as its own field, or as zeros when ``server_port`` is off.

Training-time augmentation (NetGPT's two adaptations): header-field
shuffling (the fields of a packet's headers in a random order) and packet
segmentation (a random run of consecutive packets instead of the first).
"""

from __future__ import annotations

import random
import typing
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from netgptd.capture.records import PacketRecord
from netgptd.config import fits, type_name
from netgptd.decode.decoder import LINKTYPE_RAW, decode
from netgptd.flow.config import FlowConfig
from netgptd.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, DecodeError, NotIP

PAD = 256
CLS = 257  # classification prompt: the application and attack heads read one pass
GEN = 258  # generation prompt, followed by the application token to generate
C2S = 259  # a packet from client to server starts
S2C = 260  # a packet from server to client starts
PAY = 261  # the packet's payload starts
PORT = 262  # the server port follows as two byte tokens
EOS = 263  # the flow ends (generation)
FIRST_APP_TOKEN = 264
SPECIAL_NAMES = {PAD: "[PAD]", CLS: "[CLS]", GEN: "[GEN]", C2S: "[C2S]", S2C: "[S2C]", PAY: "[PAY]", PORT: "[PORT]", EOS: "[EOS]"}

TCP_OPT_END, TCP_OPT_NOP, TCP_OPT_TIMESTAMP = 0, 1, 8


# What a manifest may set (beyond, the flow table would buffer absurd amounts per flow).
LIMITS = {"packets": (1, 256), "header_bytes": (0, 65535), "payload_bytes": (0, 65535), "max_tokens": (1, 65536)}


@dataclass(frozen=True)
class TokenizerConfig:
    """Lives in the model's manifest: serving reads it from there."""

    packets: int = 3
    header_bytes: int = 20
    payload_bytes: int = 32
    max_tokens: int = 128
    server_port: bool = True
    payload_packets: bool = True  # the flow's first packet, then packets with payload

    def flow_config(self) -> FlowConfig:
        """The flow table settings that buffer what this tokenizer reads."""
        return FlowConfig(first_packets=self.packets, first_packet_bytes=self.buffer_bytes,
                          buffer_payload_only=self.payload_packets)  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> TokenizerConfig:
        """The config a manifest holds; a ValueError names the key of a wrong-typed or absurd value
        (a string where a count belongs would otherwise pass, and fail at the first packet)."""
        # Manifests written before ``payload_packets`` existed read every packet.
        known = {"payload_packets": False} | {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        hints = typing.get_type_hints(cls)
        for key, value in known.items():
            if not fits(value, hints[key]):
                raise ValueError(f"{key}: expected {type_name(hints[key])}, got {type(value).__name__} {value!r}")
            if key in LIMITS and not LIMITS[key][0] <= value <= LIMITS[key][1]:  # type: ignore[operator]
                raise ValueError(f"{key}: must be between {LIMITS[key][0]} and {LIMITS[key][1]}, not {value!r}")
        return cls(**known)  # type: ignore[arg-type]

    @property
    def buffer_bytes(self) -> int:
        """Bytes of each packet the flow table must keep (IPv6 + TCP headers + payload)."""
        return max(self.header_bytes, 60) + 40 + self.payload_bytes


def vocab_size(app_labels: Sequence[str]) -> int:
    return FIRST_APP_TOKEN + len(app_labels)


# -- anonymisation -----------------------------------------------------------------


def _split(l3: bytes) -> tuple[int, int, int, int]:
    """(IP version, transport protocol, transport offset, payload offset) of a
    packet that starts at its IP header; offsets are -1 where unknown."""
    try:
        packet = decode(PacketRecord(0, LINKTYPE_RAW, l3, len(l3)))
    except (DecodeError, NotIP):
        return (l3[0] >> 4 if l3 else 0), -1, -1, -1
    # Tunnels decode to the inner packet, whose offsets index a copy: keep the outer view.
    if packet.data is not l3 or packet.l3_off != 0:
        return l3[0] >> 4, -1, -1, -1
    return packet.ip_version, packet.proto, packet.l4_off, packet.payload_off


def _zero_tcp_timestamps(options: bytearray) -> None:
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == TCP_OPT_END:
            return
        if kind == TCP_OPT_NOP:
            pos += 1
            continue
        if pos + 1 >= len(options) or options[pos + 1] < 2:
            return
        length = options[pos + 1]
        if kind == TCP_OPT_TIMESTAMP:
            end = min(pos + length, len(options))
            options[pos + 2 : end] = bytes(max(0, end - pos - 2))
        pos += length


def anonymise(l3: bytes) -> tuple[list[bytes], bytes]:
    """(header fields kept, payload) of one packet that starts at its IP header.

    Identifying fields are not zeroed but left out, which also keeps the
    sequences short: IPv4 keeps version/IHL/TOS, total length, flags and
    fragment offset, protocol and options; IPv6 its traffic class, payload
    length, next header and extension headers; TCP its data offset and
    flags, window, urgent pointer and options (timestamps zeroed); UDP its
    length; ICMP its type and code (identifier and sequence zeroed).
    """
    version, proto, l4, payload = _split(l3)
    fields: list[bytes] = []
    if version == 4 and len(l3) >= 20:
        ihl = (l3[0] & 0x0F) * 4
        fields += [l3[0:2], l3[2:4], l3[6:8], l3[9:10], l3[20 : max(20, ihl)]]
    elif version == 6 and len(l3) >= 40:
        fields += [bytes((l3[0], l3[1] & 0xF0)), l3[4:6], l3[6:7], l3[40 : max(40, l4)]]
    else:
        return [l3], b""
    if l4 < 0:
        return [f for f in fields if f], b""
    body = l3[payload:]
    if proto == PROTO_TCP:
        options = bytearray(l3[l4 + 20 : payload])
        _zero_tcp_timestamps(options)
        fields += [l3[l4 + 12 : l4 + 14], l3[l4 + 14 : l4 + 16], l3[l4 + 18 : l4 + 20], bytes(options)]
    elif proto == PROTO_UDP:
        fields.append(l3[l4 + 4 : l4 + 6])
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        fields.append(l3[l4 : l4 + 2])
        body = bytes(4) + body[4:]  # echo identifier and sequence
    else:
        fields.append(l3[l4:payload])
    return [f for f in fields if f], body


def carries_payload(packets: Iterable[bytes]) -> bool:
    """Whether any of a flow's packets (from the IP header on) carries payload.

    A flow without (a lone SYN, a handshake never followed by data) shows
    the model nothing but headers and a port; nDPI leaves such flows
    Unknown, and the model leaves them unclassified. A packet that does not
    decode counts as payload: the model reads it whole.
    """
    for l3 in packets:
        _, _, _, payload = _split(l3)
        if payload < 0 or payload < len(l3):
            return True
    return False


# -- encoding ----------------------------------------------------------------------


def _packet_tokens(l3: bytes, toserver: bool, config: TokenizerConfig, shuffle: random.Random | None) -> list[int]:
    fields, payload = anonymise(l3)
    if shuffle is not None:
        shuffle.shuffle(fields)
    tokens = [C2S if toserver else S2C]
    tokens += b"".join(fields)[: config.header_bytes]
    tokens.append(PAY)
    tokens += payload[: config.payload_bytes]
    return tokens


def encode_flow(
    packets: Sequence[tuple[bool, bytes]],
    server_port: int,
    config: TokenizerConfig,
    prompt: Sequence[int] = (CLS,),
    rng: random.Random | None = None,
    shuffle_probability: float = 0.0,
    segment_probability: float = 0.0,
    port_dropout: float = 0.0,
) -> list[int]:
    """Tokens of one flow: ``packets`` are (to server?, bytes from the IP header on).

    With ``rng`` (training only) the augmentations apply with the given
    probabilities. The result is at most ``config.max_tokens`` long, unpadded.
    """
    chosen = list(packets)
    if rng is not None and len(chosen) > 1 and rng.random() < segment_probability:
        start = rng.randrange(len(chosen))
        chosen = chosen[start : start + rng.randint(1, config.packets)]
    chosen = chosen[: config.packets]
    shuffle = rng if rng is not None and rng.random() < shuffle_probability else None
    use_port = config.server_port and not (rng is not None and rng.random() < port_dropout)
    port = server_port if use_port else 0
    tokens = list(prompt) + [PORT, port >> 8, port & 0xFF]
    for toserver, l3 in chosen:
        tokens += _packet_tokens(l3, toserver, config, shuffle)
    return tokens[: config.max_tokens]


def pad_batch(sequences: Sequence[Sequence[int]], length: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Right-pad to one length; returns the padded rows and each row's real length."""
    width = length or max((len(s) for s in sequences), default=1)
    rows = [list(s[:width]) + [PAD] * (width - min(len(s), width)) for s in sequences]
    return rows, [min(len(s), width) for s in sequences]


def describe(tokens: Sequence[int], app_labels: Sequence[str]) -> str:
    """A readable rendering of a token sequence, for debugging and docs."""
    out = []
    for t in tokens:
        if t < 256:
            out.append(f"{t:02x}")
        elif t in SPECIAL_NAMES:
            out.append(SPECIAL_NAMES[t])
        else:
            out.append(f"[APP={app_labels[t - FIRST_APP_TOKEN]}]")
    return " ".join(out)
