"""The NetGPT tokenizer, driven with built packets (no files)."""

from __future__ import annotations

import random

from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.model.tokenizer import (
    C2S, CLS, FIRST_APP_TOKEN, GEN, PAD, PAY, PORT, S2C, TokenizerConfig, anonymise, carries_payload, describe,
    encode_flow, pad_batch,
    vocab_size,
)  # fmt: skip
from netgptd.synth.frames import ipv4, ipv6, tcp, udp

CONFIG = TokenizerConfig(packets=3, header_bytes=64, payload_bytes=32, max_tokens=512)
TS_OPTION = b"\x01\x01\x08\x0a" + (123456).to_bytes(4, "big") + (654321).to_bytes(4, "big")


def _tcp4(src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes = b"", ident: int = 7, ttl: int = 64,
          seq: int = 1000, options: bytes = b"") -> bytes:  # fmt: skip
    return ipv4(src, dst, PROTO_TCP, tcp(src, dst, sport, dport, flags, payload, seq=seq, options=options),
                ttl=ttl, ident=ident)  # fmt: skip


def _flow(**kw: object) -> list[tuple[bool, bytes]]:
    a, b = str(kw.get("client", "10.0.0.1")), str(kw.get("server", "10.0.0.2"))
    cport = int(kw.get("cport", 40000))  # type: ignore[arg-type]
    return [
        (True, _tcp4(a, b, cport, 443, "S", options=TS_OPTION, ident=int(kw.get("ident", 7)), ttl=int(kw.get("ttl", 64)),  # type: ignore[arg-type]
                     seq=int(kw.get("seq", 1000)))),  # type: ignore[arg-type]
        (False, _tcp4(b, a, 443, cport, "SA", ident=int(kw.get("ident", 7)) + 1, seq=int(kw.get("seq", 1000)) * 3)),  # type: ignore[arg-type]
        (True, _tcp4(a, b, cport, 443, "PA", b"\x16\x03\x01hello", ttl=int(kw.get("ttl", 64)))),  # type: ignore[arg-type]
    ]


def test_addresses_ports_ids_ttl_sequence_numbers_and_timestamps_do_not_change_tokens() -> None:
    base = encode_flow(_flow(), 443, CONFIG)
    other = encode_flow(_flow(client="192.168.9.9", server="172.16.1.1", cport=51515, ident=999, ttl=3, seq=77), 443, CONFIG)
    assert base == other


def test_payload_and_server_port_do_change_tokens() -> None:
    flow = _flow()
    changed = flow[:2] + [(True, _tcp4("10.0.0.1", "10.0.0.2", 40000, 443, "PA", b"\x17\x03\x03bye!!"))]
    assert encode_flow(flow, 443, CONFIG) != encode_flow(changed, 443, CONFIG)
    assert encode_flow(flow, 443, CONFIG) != encode_flow(flow, 8443, CONFIG)


def test_layout_prompt_port_directions_and_payload_marker() -> None:
    tokens = encode_flow(_flow(), 443, CONFIG)
    assert tokens[:4] == [CLS, PORT, 0x01, 0xBB]
    assert [t for t in tokens if t in (C2S, S2C)] == [C2S, S2C, C2S]
    assert tokens.count(PAY) == 3
    assert bytes(tokens[tokens.index(PAY, len(tokens) - 12) + 1 :]) == b"\x16\x03\x01hello"
    assert max(tokens) < vocab_size([])


def test_port_blind_config_zeroes_the_port_field() -> None:
    blind = TokenizerConfig(**{**CONFIG.to_dict(), "server_port": False})
    assert encode_flow(_flow(), 443, blind)[:4] == [CLS, PORT, 0, 0]


def test_identifying_fields_are_left_out_of_headers() -> None:
    packet = _tcp4("10.1.2.3", "10.4.5.6", 40000, 443, "S", options=TS_OPTION, ident=0xBEEF, ttl=0x77)
    fields, payload = anonymise(packet)
    header = b"".join(fields)
    for needle in (bytes([10, 1, 2, 3]), bytes([10, 4, 5, 6]), (40000).to_bytes(2, "big"), b"\xbe\xef",
                   (123456).to_bytes(4, "big"), (1000).to_bytes(4, "big")):  # fmt: skip
        assert needle not in header
    assert payload == b""
    v6 = ipv6("2001:db8::1", "2001:db8::2", PROTO_UDP, udp("2001:db8::1", "2001:db8::2", 5353, 53, b"q"))
    fields, payload = anonymise(v6)
    assert b"\x20\x01\x0d\xb8" not in b"".join(fields) and payload == b"q"


def test_max_tokens_packets_and_padding() -> None:
    small = TokenizerConfig(packets=2, header_bytes=8, payload_bytes=4, max_tokens=20)
    tokens = encode_flow(_flow(), 443, small)
    assert len(tokens) <= 20 and [t for t in tokens if t in (C2S, S2C)] == [C2S, S2C]
    rows, lengths = pad_batch([[1, 2, 3], [4]])
    assert rows == [[1, 2, 3], [4, PAD, PAD]] and lengths == [3, 1]


def test_augmentations_are_seeded_and_change_the_sequence() -> None:
    flow = _flow()
    plain = encode_flow(flow, 443, CONFIG)
    a = encode_flow(flow, 443, CONFIG, rng=random.Random(5), shuffle_probability=1.0, segment_probability=1.0)
    b = encode_flow(flow, 443, CONFIG, rng=random.Random(5), shuffle_probability=1.0, segment_probability=1.0)
    assert a == b and a != plain
    assert sorted(encode_flow(flow, 443, CONFIG, rng=random.Random(1), shuffle_probability=1.0)) == sorted(plain)


def test_generation_prompt_and_config_round_trip() -> None:
    tokens = encode_flow(_flow(), 443, CONFIG, prompt=(GEN, FIRST_APP_TOKEN + 1))
    assert describe(tokens[:2], ["DNS", "TLS"]) == "[GEN] [APP=TLS]"
    assert TokenizerConfig.from_dict({**CONFIG.to_dict(), "unknown_key": 1}) == CONFIG


def test_carries_payload() -> None:
    handshake = [l3 for _, l3 in _flow()[:2]]
    assert not carries_payload(handshake) and not carries_payload([])
    assert carries_payload(handshake + [_flow()[2][1]])
    assert carries_payload([ipv4("10.0.0.1", "10.0.0.2", PROTO_UDP, udp("10.0.0.1", "10.0.0.2", 5000, 53, b"q"))])
    assert carries_payload([b"\x45\x00"])  # does not decode: the model reads it whole
