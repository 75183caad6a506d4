"""Traffic generation: ``lm.onnx`` in bundles, sampling under the grammar, packets rebuilt, ``netgptd generate``.

A tiny NetGPT is trained here on synthetic flows of two applications (TLS
over TCP 443, DNS over UDP 53, built with ``netgptd.synth.frames``, so the
test does not need the corpus), for a few seconds: enough for its LM to
emit flow-shaped sequences; the grammar and the repairs do the rest.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from netgptd import cli  # noqa: E402
from netgptd.capture.file_source import PcapFileSource  # noqa: E402
from netgptd.decode.decoder import decode  # noqa: E402
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP, TCP_SYN, Packet  # noqa: E402
from netgptd.flow.direction import client_is_src  # noqa: E402
from netgptd.model.bundle import LM_FILE, BundleError, load_bundle  # noqa: E402
from netgptd.model.generate import (  # noqa: E402
    Endpoints, GenerationError, LanguageModel, build_flow, generate, header_length, parse_sequence, sample_sequences,
)  # fmt: skip
from netgptd.model.tokenizer import (  # noqa: E402
    C2S, CLS, EOS, FIRST_APP_TOKEN, GEN, PAY, PORT, S2C, TokenizerConfig, encode_flow, vocab_size,
)  # fmt: skip
from netgptd.synth import frames  # noqa: E402
from netgptd.train.dataset import FlowExample  # noqa: E402
from netgptd.train.export import LMExport, write_bundle  # noqa: E402
from netgptd.train.labels import Label  # noqa: E402
from netgptd.train.model import ModelShape, NetGPT  # noqa: E402
from netgptd.train.trainer import TrainSettings, finetune, generation_tokens, pretrain  # noqa: E402

APPS = ("DNS", "TLS")
ATTACKS = ("benign",)
TOKENIZER = TokenizerConfig(packets=3, header_bytes=24, payload_bytes=16, max_tokens=96)
SHAPE = ModelShape(layers=1, width=48, heads=2, positions=104)
CLIENT, SERVER = "192.0.2.10", "198.51.100.20"
SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a" + "00" * 8 + "01030307")  # MSS, SACK ok, timestamps, NOP, WS


def tls_flow(rng: random.Random) -> tuple[tuple[bool, bytes], ...]:
    """SYN, ClientHello, ServerHello: what the flow table buffers for the model (``payload_packets``)."""
    port = rng.randrange(1024, 65536)
    hello_len = rng.randrange(180, 600)
    hello = bytes((0x16, 3, 1)) + struct.pack("!H", hello_len) + bytes((1, 0)) + struct.pack("!H", hello_len - 4)
    hello += bytes((3, 3)) + rng.randbytes(hello_len - 4)
    server_hello = bytes.fromhex("160303007a020000760303") + rng.randbytes(119)
    c, s = rng.getrandbits(32), rng.getrandbits(32)

    def ip(src: str, dst: str, segment: bytes) -> bytes:
        return frames.ipv4(src, dst, PROTO_TCP, segment, flags=frames.IP_DF)

    syn = frames.tcp(CLIENT, SERVER, port, 443, "S", seq=c, window=64240, options=SYN_OPTIONS)
    client_hello = frames.tcp(CLIENT, SERVER, port, 443, "PA", hello, seq=c + 1, ack=s + 1, window=502)
    reply = frames.tcp(SERVER, CLIENT, 443, port, "A", server_hello, seq=s + 1, ack=c + 1 + hello_len, window=501)
    return (True, ip(CLIENT, SERVER, syn)), (True, ip(CLIENT, SERVER, client_hello)), (False, ip(SERVER, CLIENT, reply))


def dns_flow(rng: random.Random) -> tuple[tuple[bool, bytes], ...]:
    port = rng.randrange(1024, 65536)
    name = b"".join(bytes((n,)) + bytes(rng.choice(b"abcdefghij") for _ in range(n)) for n in (rng.randrange(3, 9), 3))
    question = name + b"\0" + struct.pack("!HH", 1, 1)
    ident = rng.getrandbits(16)
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    answer = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + bytes.fromhex("c00c000100010000012c0004")
    answer += rng.randbytes(4)
    return (
        (True, frames.ipv4(CLIENT, SERVER, PROTO_UDP, frames.udp(CLIENT, SERVER, port, 53, query))),
        (False, frames.ipv4(SERVER, CLIENT, PROTO_UDP, frames.udp(SERVER, CLIENT, 53, port, answer))),
    )


def examples(count: int, seed: int = 0) -> list[FlowExample]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        app = APPS[i % 2]
        packets = dns_flow(rng) if app == "DNS" else tls_flow(rng)
        out.append(FlowExample("synthetic", "test", packets, 53 if app == "DNS" else 443,
                               PROTO_UDP if app == "DNS" else PROTO_TCP, Label(app, "benign")))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def model() -> NetGPT:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        net = NetGPT(SHAPE, vocab_size(APPS), len(APPS), len(ATTACKS))
        flows = examples(128)
        pretrain(net, flows, APPS, TOKENIZER, TrainSettings(pretrain_epochs=20, batch=32, lr=1e-2), progress=False)
        finetune(net, flows, APPS, ATTACKS, TOKENIZER, TrainSettings(finetune_epochs=2, batch=32, lr=2e-3),
                 progress=False)
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@pytest.fixture(scope="module")
def bundle_dir(model: NetGPT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("gen") / "netgpt", model, APPS, ATTACKS, TOKENIZER, SHAPE,
                        training_summary={}, evaluation={}, name="netgpt-gen", version="0.1")  # fmt: skip


# -- lm.onnx in the bundle ---------------------------------------------------------


def test_bundle_records_a_dynamic_lm_that_matches_torch(model: NetGPT, bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.lm_file == bundle_dir / LM_FILE
    assert bundle.manifest["lm_file"] == LM_FILE and len(bundle.manifest["lm_sha256"]) == 64
    session = ort.InferenceSession(bundle.lm_bytes(), providers=["CPUExecutionProvider"])
    assert [all(isinstance(d, str) for d in i.shape) for i in session.get_inputs()] == [True, True]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    rng = np.random.default_rng(0)
    for rows, length in ((1, 1), (4, 9), (2, SHAPE.positions)):
        ids = rng.integers(0, EOS + 1, (rows, length))
        ids[:, 0] = GEN
        mask = np.ones_like(ids)
        (got,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            want = LMExport(model)(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        assert got.shape == (rows, length, vocab_size(APPS))
        assert np.abs(got - want).max() < 1e-3


def test_lm_is_checked_and_optional(bundle_dir: Path, tmp_path: Path) -> None:
    tampered = Path(shutil.copytree(bundle_dir, tmp_path / "tampered"))
    data = bytearray((tampered / LM_FILE).read_bytes())
    data[len(data) // 2] ^= 1
    (tampered / LM_FILE).write_bytes(data)
    with pytest.raises(BundleError, match=f"^{LM_FILE} in .* does not match its manifest"):
        load_bundle(tampered)

    old = Path(shutil.copytree(bundle_dir, tmp_path / "old"))  # as exported before generation existed
    (old / LM_FILE).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    for key in ("lm_file", "lm_sha256", "lm_outputs"):
        del manifest[key]
    (old / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(old)
    assert bundle.lm_file is None
    with pytest.raises(BundleError, match="has no language model"):
        generate(bundle, "TLS", 1)


def test_generate_cli_errors(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.pcap"
    assert cli.main(["generate", "--app", "SMTP", "-o", str(out), "--model", str(bundle_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "netgptd: error: unknown app 'SMTP': netgpt-gen@0.1 generates DNS, TLS"
    old = Path(shutil.copytree(bundle_dir, tmp_path / "old"))
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["lm_file"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["generate", "--app", "TLS", "-o", str(out), "--model", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no language model (lm.onnx)" in err
    assert not out.exists()
    with pytest.raises(GenerationError, match="unknown app"):
        generate(load_bundle(bundle_dir), "HTTP", 1)


# -- sampling ------------------------------------------------------------------------


def test_sampled_sequences_keep_the_grammar(bundle_dir: Path) -> None:
    lm = LanguageModel(load_bundle(bundle_dir))
    sequences = sample_sequences(lm, "TLS", 16, temperature=1.5, rng=np.random.default_rng(3), batch=7)
    assert len(sequences) == 16
    for tokens in sequences:
        assert tokens[:3] == [GEN, FIRST_APP_TOKEN + APPS.index("TLS"), PORT] and tokens[-1] == EOS
        assert len(tokens) <= TOKENIZER.max_tokens and EOS not in tokens[:-1]
        assert all(t < 256 or t in (C2S, S2C, PAY) for t in tokens[5:-1])
        assert tokens[5] == C2S
        starts = [i for i, t in enumerate(tokens) if t in (C2S, S2C)]
        assert 1 <= len(starts) <= TOKENIZER.packets
        for start, end in zip(starts, starts[1:] + [len(tokens) - 1]):
            packet = tokens[start + 1 : end]
            if PAY not in packet:  # only the last packet, cut by max_tokens
                assert end == len(tokens) - 1 and len(tokens) == TOKENIZER.max_tokens
                continue
            header = bytes(packet[: packet.index(PAY)])
            assert len(header) == header_length(header, TOKENIZER.header_bytes)
            assert header[0] >> 4 == 4 and header[6] in (PROTO_TCP, PROTO_UDP)
            payload = len(packet) - len(header) - 1
            assert payload <= TOKENIZER.payload_bytes
            assert payload >= 1 or start == starts[0] or len(tokens) == TOKENIZER.max_tokens  # payload_packets


def test_training_sequences_parse_back(bundle_dir: Path) -> None:
    """What the LM learnt from (real-shaped flows) rebuilds without loss of its fields."""
    for example in examples(6, seed=9):
        tokens = generation_tokens(example, APPS, TOKENIZER)
        parsed = parse_sequence(tokens, TOKENIZER)
        assert parsed is not None and parsed.port == example.server_port
        assert len(parsed.packets) == len(example.packets)
        ends = Endpoints(CLIENT, SERVER, 40000, example.server_port)
        rebuilt = build_flow(parsed, ends, 0, np.random.default_rng(0))
        again = [(p.toserver, r.data[14:]) for p, r in zip(parsed.packets, rebuilt)]
        original = [(toserver, data) for toserver, data in example.packets]
        # the same tokens, up to the client port the tokenizer drops anyway
        port = example.server_port
        assert encode_flow(again, port, TOKENIZER) == encode_flow(original, port, TOKENIZER)


# -- repairs -------------------------------------------------------------------------


def _tcp_header(total: int, flags: int, doff: int = 5, frag: int = 0x4000, options: bytes = b"") -> list[int]:
    return [*struct.pack("!BBHHB", 0x45, 0, total, frag, PROTO_TCP), doff << 4, flags, 0xFF, 0xFF, 0, 0, *options]


def _udp_header(total: int) -> list[int]:
    return [*struct.pack("!BBHHB", 0x45, 0, total, 0, PROTO_UDP), *struct.pack("!H", total - 20)]


PROMPT = [GEN, FIRST_APP_TOKEN + 1, PORT, 1, 187]


def test_broken_sequences_are_dropped() -> None:
    for tokens in (
        PROMPT + [EOS],  # no packet
        PROMPT + [C2S, 0x45, 0, 0, 40, EOS],  # cut before its payload
        PROMPT + [C2S, 0x60, 0, 0, 40, 0, 0, 6, PAY, EOS],  # not IPv4
        PROMPT + [C2S, 0x45, 0, 0, 40, 0, 0, 1, PAY, 8, 0, EOS],  # ICMP
        PROMPT + [C2S, 0x45, 0, 0, 40, 0, 0, 6, 0x20, 2, PAY, EOS],  # TCP data offset below 5
        PROMPT + [S2C, *_tcp_header(40, 0x12), PAY, EOS],  # the server alone
        PROMPT + [CLS, C2S, *_tcp_header(40, 2), PAY, EOS],  # a token that has no place in a flow
        [GEN, FIRST_APP_TOKEN, 7, 9, 9, EOS],  # bytes before any packet
    ):
        assert parse_sequence(tokens, TOKENIZER) is None, tokens


def test_repairs_make_valid_packets() -> None:
    tokens = PROMPT + [
        C2S, *_tcp_header(60, TCP_SYN | 0x10, doff=10, frag=0x2000 | 37, options=[2, 4, 5, 0xB4, 3, 0]), PAY,
        S2C, *_udp_header(40), PAY, 1, 2,  # another protocol: dropped
        C2S, *_tcp_header(1400, 0x18), PAY, *range(16),  # a full payload window: extended to the length said
        S2C, *_tcp_header(40, 0x11), PAY,  # more packets than the tokenizer reads
        EOS,
    ]  # fmt: skip
    parsed = parse_sequence(tokens, TOKENIZER)
    assert parsed is not None and parsed.port == 443
    assert [(p.toserver, p.tcp_flags, p.length) for p in parsed.packets] == [(True, TCP_SYN, 0), (True, 0x18, 1360)]
    # MSS kept, the option of length 0 ended, the rest (cut by the header window) completed
    assert parsed.packets[0].tcp_options == bytes((2, 4, 5, 0xB4)) + bytes(16) and not parsed.packets[0].dont_fragment
    assert parsed.packets[1].payload == bytes(range(16)) and parsed.packets[1].fill == 1360 - 16
    assert set(parsed.repairs) == {"packets_cut", "packet_wrong_protocol", "fragment_cleared", "tcp_options_fixed",
                                   "tcp_flags_fixed"}  # fmt: skip
    cut = parse_sequence(PROMPT + [C2S, *_tcp_header(60, TCP_SYN, doff=10, options=[2, 4, 5, 0xB4, 8, 10, 0]), PAY,
                                   EOS], TOKENIZER)  # fmt: skip
    assert cut is not None and not cut.repairs  # a timestamp cut by the window: completed, zero as anonymised
    assert cut.packets[0].tcp_options == bytes((2, 4, 5, 0xB4, 8, 10)) + bytes(14)
    kind_only = parse_sequence(PROMPT + [C2S, *_tcp_header(60, TCP_SYN, doff=10, options=[2, 4, 5, 0xB4, 4, 2, 8]),
                                         PAY, EOS], TOKENIZER)  # fmt: skip
    assert kind_only is not None and not kind_only.repairs  # cut after its kind: a timestamp option has 10 bytes
    assert kind_only.packets[0].tcp_options == bytes((2, 4, 5, 0xB4, 4, 2, 8, 10)) + bytes(12)
    leading = parse_sequence(PROMPT + [S2C, *_tcp_header(40, 0x10), PAY, C2S, *_tcp_header(40, 0x10), PAY, EOS],
                             TOKENIZER)  # fmt: skip
    assert leading is not None and [p.toserver for p in leading.packets] == [True]
    assert leading.repairs == {"leading_server_packet": 1}
    # A short payload followed by another packet is whole: the length fields follow it.
    short = parse_sequence(PROMPT + [C2S, *_tcp_header(40, 2), PAY, S2C, *_tcp_header(900, 0x12), PAY, 7, 7,
                                     C2S, *_tcp_header(40, 0x10), PAY, EOS], TOKENIZER)  # fmt: skip
    assert short is not None and short.packets[1].length == 2 and short.repairs == {"length_fixed": 1}
    # The same at the end of the sequence was cut there (max_tokens): extended to the length said.
    last = parse_sequence(PROMPT + [C2S, *_tcp_header(40, 2), PAY, S2C, *_tcp_header(900, 0x12), PAY, 7, 7, EOS],
                          TOKENIZER)  # fmt: skip
    assert last is not None and (last.packets[1].payload, last.packets[1].fill) == (bytes((7, 7)), 858)
    assert not last.repairs
    records = build_flow(parsed, Endpoints("10.77.0.1", "10.77.1.1", 40000, 443), 0, np.random.default_rng(0))
    for record in records:
        check_frame(record.data)
    assert len(records[1].data) == 14 + 40 + 1360 and records[1].data[54:70] == bytes(range(16))


# -- the capture -----------------------------------------------------------------


def check_frame(frame: bytes) -> tuple[int, bytes, bytes, int, int]:
    """Assert the lengths and checksums of an Ethernet + IPv4 + TCP/UDP frame;
    returns (protocol, source, destination, source port, destination port)."""
    assert frame[12:14] == b"\x08\x00"
    packet = frame[14:]
    ihl = (packet[0] & 0x0F) * 4
    assert packet[0] >> 4 == 4 and ihl >= 20
    assert struct.unpack_from("!H", packet, 2)[0] == len(packet)
    assert frames.checksum(packet[:ihl]) == 0
    assert struct.unpack_from("!H", packet, 6)[0] & 0x3FFF == 0  # no fragment
    assert packet[8] == 64
    proto, src, dst, segment = packet[9], packet[12:16], packet[16:20], packet[ihl:]
    pseudo = src + dst + struct.pack("!xBH", proto, len(segment))
    assert frames.checksum(pseudo + segment) == 0
    if proto == PROTO_UDP:
        assert struct.unpack_from("!H", segment, 4)[0] == len(segment)
    else:
        assert proto == PROTO_TCP and 20 <= (segment[12] >> 4) * 4 <= len(segment)
    sport, dport = struct.unpack_from("!HH", segment)
    return proto, src, dst, sport, dport


@pytest.mark.parametrize(("app", "proto", "port"), [("TLS", PROTO_TCP, 443), ("DNS", PROTO_UDP, 53)])
def test_generate_cli_writes_a_valid_capture(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             app: str, proto: int, port: int) -> None:  # fmt: skip
    out = tmp_path / f"{app}.pcap"
    argv = ["generate", "--app", app, "-n", "20", "-o", str(out), "--model", str(bundle_dir), "--seed", "1"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"netgptd generate: 20 {app} flows (")
    assert lines[0].endswith(f" on port {port} for a sampled port 0)")
    assert lines[1].startswith(f"classified as {app} by netgpt-gen@0.1: ") and lines[1].endswith("%)")
    hits, flows = map(int, lines[1].split(": ")[1].split(" flows")[0].split(" of "))
    assert flows == 20 and hits >= 12  # two apps a port and a protocol apart: the tiny model tells them

    # The same seed gives the same flows: their endpoints are what the capture must show.
    result = generate(load_bundle(bundle_dir), app, 20, seed=1)
    assert out.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # classic pcap, microseconds
    source = PcapFileSource(out)
    records = list(source.packets())
    assert not source.truncated and [r.data for r in records] == [r.data for r in result.records]
    assert all(a.ts_ns < b.ts_ns for a, b in zip(records, records[1:]))
    protos = Counter(check_frame(record.data)[0] for record in records)
    assert protos.most_common(1)[0][0] == proto  # the LM's choice, per flow: mostly the app's
    assert sum(e.server_port == port for e in result.flows) >= 15  # sampled, or the usual port where 0 was

    eve = tmp_path / "eve.json"
    assert cli.main(["replay", str(out), "--eve", str(eve), "--model", str(bundle_dir), "-q"]) == 0
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    stats = next(e["netgpt"]["stats"] for e in events if e["event_type"] == "stats")
    assert stats["decode_errors"] == {} and stats["skipped"] == {} and stats["packets"] == len(records)
    flow_events = [e for e in events if e["event_type"] == "flow"]
    assert len(flow_events) == 20 == stats["flows"]
    # Each flow as generated (the 10.77.0.x client to the 10.77.1.x server on the generated port), oriented as
    # netgptd.flow.direction reads its first packet: the tiny LM may open a flow with the server's words (a TLS
    # ServerHello from the client's side), which makes its sender the server.
    firsts: dict[frozenset, Packet] = {}
    for record in records:
        p = decode(record)
        firsts.setdefault(frozenset(((p.src, p.sport), (p.dst, p.dport))), p)
    expected = []
    for f in result.flows:
        client = (frames.addr(f.client), f.client_port)
        p = firsts[frozenset((client, (frames.addr(f.server), f.server_port)))]
        as_generated = client_is_src(p.proto, p.tcp_flags, p.sport, p.dport, p.data[p.payload_off : p.end]) == (
            (p.src, p.sport) == client)  # fmt: skip
        ends = [(f.client, f.client_port), (f.server, f.server_port)]
        expected.append((*ends[0], *ends[1]) if as_generated else (*ends[1], *ends[0]))
    assert sorted((e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"]) for e in flow_events) == sorted(expected)
    assert Counter(e["proto"] for e in flow_events).most_common(1)[0][0] == ("TCP" if proto == PROTO_TCP else "UDP")
    assert sum(e["netgpt"]["app"] == app for e in flow_events) == hits


def test_generation_is_seeded(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    lm = LanguageModel(bundle)
    first, again = generate(bundle, "TLS", 5, seed=7, lm=lm), generate(bundle, "TLS", 5, seed=7, lm=lm)
    assert [r.data for r in first.records] == [r.data for r in again.records]
    assert [r.data for r in generate(bundle, "TLS", 5, seed=8, lm=lm).records] != [r.data for r in first.records]
    greedy = generate(bundle, "DNS", 3, temperature=0, lm=lm)
    assert len(greedy.flows) == 3 and greedy.sampled == 3


def test_generation_never_imports_torch() -> None:
    code = "import sys, netgptd.model.generate\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
