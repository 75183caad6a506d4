"""Evaluation: metrics by hand, the baselines on toy data, and the leakage
check's capture rewriting on real captures of the corpus."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from netgptd.capture.file_source import PcapFileSource
from netgptd.decode.decoder import decode
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP, DecodeError, NotIP
from netgptd.flow.config import FlowConfig
from netgptd.flow.direction import client_is_src, port_role
from netgptd.flow.table import FlowTable
from netgptd.model.tokenizer import TokenizerConfig, encode_flow
from netgptd.synth import frames
from netgptd.train.baselines import ByteLogReg, PortLookup, byte_features
from netgptd.train import dataset
from netgptd.train.dataset import Corpus, FlowExample, app_classes, flows_of, load_corpus, split
from netgptd.train.evaluate import class_recall, false_alarm_rate, per_capture
from netgptd.train.labels import Label
from netgptd.train.leakage import (
    KEPT_PORTS,
    _port_permutation,
    capture_paths,
    ip_layers,
    randomise_capture,
    randomised_examples,
    updated_checksum,
)
from netgptd.train.metrics import Report, format_table, score

# -- metrics ---------------------------------------------------------------------------

TRUE = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]
CLASSES = ["a", "b", "c", "d"]


def test_score_by_hand() -> None:
    report = score(TRUE, PRED, CLASSES)
    a, b, c, d = report.classes
    assert (a.precision, a.recall, a.support, a.predicted) == (1.0, 2 / 3, 3, 2)
    assert a.f1 == pytest.approx(0.8)
    assert (b.precision, b.recall, b.f1) == (0.5, 0.5, 0.5)
    assert (c.precision, c.recall) == (0.5, 1.0)
    assert c.f1 == pytest.approx(2 / 3)
    assert (d.precision, d.recall, d.f1, d.support) == (0.0, 0.0, 0.0, 0)
    # d has no test flows: the macro average is over a, b and c only.
    assert report.macro_over == ("a", "b", "c")
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.confusions == (("a", "b", 1), ("b", "c", 1))
    assert report.confusion_lines() == ["a → b: 1", "b → c: 1"]


def test_predicting_a_class_without_support_costs_recall_not_macro_terms() -> None:
    report = score(["a", "a", "b"], ["a", "d", "b"], CLASSES)
    by = report.by_class()
    assert by["a"].recall == 0.5 and by["a"].precision == 1.0
    assert by["d"].predicted == 1 and by["d"].precision == 0.0
    assert report.macro_over == ("a", "b")
    assert report.macro_f1 == pytest.approx((2 / 3 + 1.0) / 2)
    assert report.confusions == (("a", "d", 1),)


def test_score_rejects_labels_outside_the_classes() -> None:
    with pytest.raises(ValueError, match="not among the classes"):
        score(["a", "x"], ["a", "a"], CLASSES)
    with pytest.raises(ValueError):
        score(["a"], ["a", "b"], CLASSES)


def test_report_dicts_round_trip_and_the_table() -> None:
    report = score(TRUE, PRED, CLASSES)
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    other = score(TRUE, ["a"] * 6, CLASSES)
    table = format_table({"NetGPT": report, "port lookup": other}, title="Applications")
    lines = table.splitlines()
    assert lines[0] == "Applications"
    assert "NetGPT" in lines[1] and "port lookup" in lines[1]
    row_a = next(line for line in lines if line.startswith("a "))
    assert row_a.split() == ["a", "3", "1.0", ".67", ".80", ".50", "1.0", ".67"]
    macro = next(line for line in lines if line.startswith("macro-F1"))
    assert macro.split()[1:] == [f"{report.macro_f1:.3f}", f"{other.macro_f1:.3f}"]
    assert "over the 3 of 4 classes with flows in the test set (left out: d)" in table
    assert "top confusions, NetGPT: a → b: 1; b → c: 1" in table


def test_attack_rates() -> None:
    truth = ["benign", "benign", "benign", "benign", "mining", "mining", "dos"]
    pred = ["benign", "dos", "benign", "mining", "mining", "benign", "dos"]
    assert false_alarm_rate(truth, pred) == 0.5
    assert class_recall(truth, pred, "mining") == 0.5
    assert class_recall(truth, pred, "scan") is None
    assert false_alarm_rate(["dos"], ["benign"]) is None


def test_per_capture_detection() -> None:
    examples = [_example(PROTO_TCP, 80, capture=name) for name in ("x", "x", "x", "y")]
    truth = ["dos", "dos", "benign", "benign"]
    rows = per_capture(examples, truth, {"m": ["dos", "mining", "dos", "dos"]})
    assert len(rows) == 1  # y has no attack flows
    assert rows[0]["attack"] == "dos" and rows[0]["attack_flows"] == 2
    assert rows[0]["scorers"] == {"m": {"detected": 0.5, "flagged": 1.0}}


# -- baselines ---------------------------------------------------------------------------


def _example(proto: int, port: int, app: str = "x", packets: tuple = (), capture: str = "c") -> FlowExample:
    return FlowExample(capture, "toy", packets, port, proto, Label(app, "benign"))


def test_port_lookup_majority_per_protocol_and_port() -> None:
    train = (
        [_example(PROTO_TCP, 443, "TLS")] * 3 + [_example(PROTO_TCP, 443, "HTTP")]
        + [_example(PROTO_UDP, 53, "DNS")] * 2 + [_example(PROTO_TCP, 80, "HTTP")] * 2
    )  # fmt: skip
    lookup = PortLookup().fit(train, [e.label.app for e in train])
    test = [_example(PROTO_TCP, 443), _example(PROTO_UDP, 53), _example(PROTO_TCP, 80), _example(PROTO_UDP, 443),
            _example(PROTO_TCP, 8080)]  # fmt: skip
    # Unseen (proto, port): the overall majority; TLS and HTTP tie at 3, the first name wins.
    assert lookup.predict(test) == ["TLS", "DNS", "HTTP", "HTTP", "HTTP"]


def _toy_flow(rng: random.Random, payload: bytes, version: int = 4, tail: bytes | None = None) -> tuple[tuple[bool, bytes], ...]:
    """A TCP exchange with random addresses, client port and sequence numbers:
    ``payload`` and ``tail`` (20 random bytes if not given) to the server."""
    if version == 4:
        client, server = (bytes(rng.getrandbits(8) for _ in range(4)) for _ in range(2))
    else:
        client, server = (bytes(rng.getrandbits(8) for _ in range(16)) for _ in range(2))
    port = rng.randrange(1024, 65536)
    seq = rng.getrandbits(32)
    body = payload + (bytes(rng.getrandbits(8) for _ in range(20)) if tail is None else tail)
    return (
        (True, frames.ip(client, server, PROTO_TCP, frames.tcp(client, server, port, 443, "PA", body, seq=seq))),
        (False, frames.ip(server, client, PROTO_TCP, frames.tcp(server, client, 443, port, "A", seq=seq + 7))),
    )


def test_byte_features_ignore_addresses_and_ports() -> None:
    a = _toy_flow(random.Random(1), b"GET / HTTP/1.1\r\n", tail=b"x")
    b = _toy_flow(random.Random(2), b"GET / HTTP/1.1\r\n", tail=b"x")
    assert a != b
    fa, fb = byte_features([_example(PROTO_TCP, 443, packets=a), _example(PROTO_TCP, 443, packets=b)])
    assert (fa == fb).all() and fa.shape == (3 * 64 + 3,)
    assert list(fa[-3:]) == [1.0, -1.0, 0.0]  # directions; no third packet


def test_byte_logreg_learns_a_separable_problem() -> None:
    rng = random.Random(0)
    heads = {"http": b"GET / HTTP/1.1\r\n", "tls": b"\x16\x03\x01\x02\x00\x01\x00\x01", "ssh": b"SSH-2.0-OpenSSH_9"}

    def flows(n: int) -> list[FlowExample]:
        return [_example(PROTO_TCP, 443, app, _toy_flow(rng, head, rng.choice((4, 6)))) for app, head in heads.items()
                for _ in range(n)]  # fmt: skip

    train, test = flows(30), flows(10)
    model = ByteLogReg(iterations=100).fit(train, [e.label.app for e in train])
    assert model.classes == sorted(heads)
    assert model.predict(test) == [e.label.app for e in test]
    p = model.probabilities(test)
    assert p.shape == (30, 3) and abs(p.sum(axis=1) - 1).max() < 1e-9


# -- leakage: captures rewritten ----------------------------------------------------------


def test_incremental_checksum_matches_a_fresh_one() -> None:
    rng = random.Random(5)
    for _ in range(50):
        old = bytes(rng.getrandbits(8) for _ in range(2 * rng.randrange(1, 30)))
        new = bytearray(old)
        for _ in range(3):
            new[rng.randrange(len(new))] = rng.getrandbits(8)
        value = updated_checksum(frames.checksum(old), old, bytes(new))
        assert frames.checksum(bytes(new) + struct.pack("!H", value)) == 0
        # A wrong checksum stays wrong by the same amount.
        wrong = updated_checksum(frames.checksum(old) ^ 0x0100, old, bytes(new))
        assert frames.checksum(bytes(new) + struct.pack("!H", wrong)) != 0


def _corpus_file(corpus: Path, name: str) -> Path:
    path = corpus / name
    if not path.is_file():
        pytest.skip(f"{name} is not in the corpus at {corpus}")
    return path


def _ip_checksum_ok(data: bytes, layer) -> bool | None:  # type: ignore[no-untyped-def]
    if layer.version != 4:
        return None
    return frames.checksum(data[layer.l3 : layer.l3 + (data[layer.l3] & 0x0F) * 4]) == 0


def _l4_checksum_ok(data: bytes, layer) -> bool | None:  # type: ignore[no-untyped-def]
    if layer.l4 < 0 or layer.proto not in (PROTO_TCP, PROTO_UDP):
        return None
    if layer.proto == PROTO_UDP and layer.version == 4 and data[layer.l4 + 6 : layer.l4 + 8] == b"\0\0":
        return None
    segment = data[layer.l4 : layer.end]
    if layer.version == 4:
        pseudo = data[layer.l3 + 12 : layer.l3 + 20] + struct.pack("!xBH", layer.proto, len(segment))
    else:
        pseudo = data[layer.l3 + 8 : layer.l3 + 40] + struct.pack("!I3xB", len(segment), layer.proto)
    return frames.checksum(pseudo + segment) == 0


def test_client_ports_change_within_their_role_so_flows_keep_their_orientation() -> None:
    """Client ports are swapped only for ports of the same role (netgptd.flow.direction.port_role), and
    without fixed points but the ports the decoder reads: a flow of the copy is oriented as the original."""
    ports = _port_permutation(random.Random(3))
    assert sorted(ports) == list(range(65536))
    assert [p for p in range(65536) if ports[p] == p] == sorted(KEPT_PORTS)
    assert all(port_role(ports[p]) == port_role(p) for p in range(65536))
    rng = random.Random(4)
    for _ in range(20_000):
        client = rng.choice((rng.randrange(65536), rng.choice((53, 80, 443, 5353, 8080, 40000))))
        server = rng.randrange(65536)
        payload = rng.choice((b"", b"x" * 20, b"\x12\x34\x81\x80" + bytes(10)))
        for proto, flags in ((PROTO_UDP, 0), (PROTO_TCP, 0x10)):
            assert (client_is_src(proto, flags, client, server, payload)
                    == client_is_src(proto, flags, ports[client], server, payload))  # fmt: skip
            assert (client_is_src(proto, flags, server, client, payload)
                    == client_is_src(proto, flags, server, ports[client], payload))  # fmt: skip


@pytest.mark.parametrize("name", ["ndpi/pcap/hart_ip.pcap", "ndpi/pcap/lru_ipv6_caches.pcapng", "ndpi/pcap/4in4tunnel.pcap"])
def test_randomise_capture(corpus: Path, tmp_path: Path, name: str) -> None:
    src = _corpus_file(corpus, name)
    dst = tmp_path / "copy.pcapng"
    maps = randomise_capture(src, dst, seed=7)
    before = list(PcapFileSource(src).packets())
    after = list(PcapFileSource(dst).packets())
    assert len(after) == len(before) == maps.packets == maps.rewritten
    table = FlowTable(FlowConfig(first_packets=0))
    checked = {"ip": 0, "l4": 0, "ports": 0}
    for old, new in zip(before, after):
        assert (new.ts_ns, new.orig_len, len(new.data)) == (old.ts_ns, old.orig_len, len(old.data))
        try:
            p = decode(old)
        except (DecodeError, NotIP):
            assert new.data == old.data
            continue
        q = decode(new)
        flow = table.add(p)
        old_layers, new_layers = ip_layers(old, p), ip_layers(new, q)
        assert [(x.l3, x.l4, x.proto) for x in old_layers] == [(x.l3, x.l4, x.proto) for x in new_layers]
        for x, y in zip(old_layers, new_layers):
            at, size = (12, 4) if x.version == 4 else (8, 16)
            for off in (at, at + size):
                a, b = old.data[x.l3 + off : x.l3 + off + size], new.data[y.l3 + off : y.l3 + off + size]
                assert a != b and maps.address(a) == b
            for check in (_ip_checksum_ok, _l4_checksum_ok):
                valid = check(old.data, x)
                if valid:
                    assert check(new.data, y), f"{check.__name__} broken"
                    checked["ip" if check is _ip_checksum_ok else "l4"] += 1
        assert new.data[q.payload_off : q.end] == old.data[p.payload_off : p.end]
        if p.proto in (PROTO_TCP, PROTO_UDP) and flow is not None:
            toserver = p.src == flow.client_ip and p.sport == flow.client_port
            client_old, server_old = (p.sport, p.dport) if toserver else (p.dport, p.sport)
            client_new, server_new = (q.sport, q.dport) if toserver else (q.dport, q.sport)
            assert server_new == server_old == flow.server_port
            assert client_new == maps.port(client_old) != client_old
            checked["ports"] += 1
    assert checked["l4"] and checked["ports"] and (checked["ip"] or "ipv6" in name)

    # The anonymisation guarantee: the tokenizer cannot tell the copy from the original.
    config = TokenizerConfig()
    twins = {(f.proto, f.client_ip, f.client_port, f.server_ip, f.server_port, f.start_ns): f for f in flows_of(dst, config)}
    originals = [f for f in flows_of(src, config) if f.proto in (PROTO_TCP, PROTO_UDP)]
    assert originals
    for f in originals:
        g = twins[(f.proto, maps.address(f.client_ip), maps.port(f.client_port), maps.address(f.server_ip), f.server_port,
                   f.start_ns)]  # fmt: skip
        assert [d for _, _, d in g.first_packets] != [d for _, _, d in f.first_packets]
        tokens = [encode_flow([(t, d) for _, t, d in flow.first_packets], flow.server_port, config) for flow in (f, g)]
        assert tokens[0] == tokens[1]


def test_randomised_examples_keep_labels_and_tokens(corpus: Path, tmp_path: Path) -> None:
    paths = [_corpus_file(corpus, "ndpi/pcap/lru_ipv6_caches.pcapng"), _corpus_file(corpus, "ndpi/pcap/roblox.pcapng")]
    config = TokenizerConfig()
    test = load_corpus(paths, config, progress=False).examples
    result = randomised_examples(test, capture_paths(paths), config, seed=3, workdir=tmp_path)
    assert result.indices == list(range(len(test))) and result.unmatched == 0 and result.captures == 2
    for i, twin in zip(result.indices, result.examples):
        e = test[i]
        assert (twin.label, twin.capture, twin.server_port, twin.proto) == (e.label, e.capture, e.server_port, e.proto)
        assert twin.packets != e.packets
        assert encode_flow(twin.packets, twin.server_port, config) == encode_flow(e.packets, e.server_port, config)
    assert list(tmp_path.iterdir()) == []  # the copies are gone


def test_evaluate_end_to_end_with_an_untrained_model(corpus: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from netgptd.model.tokenizer import vocab_size
    from netgptd.train.evaluate import evaluate, render
    from netgptd.train.labels import ATTACKS
    from netgptd.train.model import ModelShape, NetGPT
    from netgptd.train.trainer import seed_everything

    config = TokenizerConfig()
    train_files = ["ndpi/pcap/lru_ipv6_caches.pcapng", "ndpi/pcap/netbios.pcap", "mining/zec-eu1.nanopool.org.pcapng"]
    test_files = ["ndpi/pcap/roblox.pcapng", "ndpi/pcap/punycode-idn.pcap", "mining/xmr-eu1.nanopool.org.pcapng"]
    train = load_corpus([_corpus_file(corpus, n) for n in train_files], config, progress=False).examples
    test_paths = [_corpus_file(corpus, n) for n in test_files]
    test = load_corpus(test_paths, config, progress=False).examples
    apps = ["BitTorrent", "DNS", "Mining", "NetBIOS", "TLS", "unknown"]
    attacks = list(ATTACKS)
    seed_everything(0, 1)
    model = NetGPT(ModelShape(layers=1, width=32, heads=2), vocab_size(apps), len(apps), len(attacks))
    result = evaluate(model, train, test, apps, attacks, config, roots=test_paths)
    json.dumps(result)
    assert result["scorers"] == ["NetGPT", "NetGPT port-blind", "NetGPT randomised", "port lookup", "byte LR"]
    leakage = result["leakage"]
    assert leakage["passed"] and leakage["flows"] == len(test) and leakage["unmatched"] == 0
    assert leakage["apps"]["changed_predictions"] == leakage["attacks"]["changed_predictions"] == 0
    assert result["apps"]["reports"]["NetGPT"]["total"] == len(test)
    assert result["mining_recall"]["port lookup"] is not None
    assert [r["capture"] for r in result["per_capture"]] == ["xmr-eu1.nanopool.org.pcapng"]
    collections = {r["collection"]: r for r in result["apps_per_collection"]}
    assert set(collections) == {"ndpi", "mining"} and sum(r["flows"] for r in collections.values()) == len(test)
    port_lookup = collections["mining"]["scorers"]["port lookup"]
    assert 0 <= port_lookup["macro_f1"] <= 1 and 0 <= port_lookup["accuracy"] <= 1
    text = render(result)
    for needle in ("Applications", "Attacks", "macro-F1", "PASS: no drop", "False alarms", "Mining recall", "xmr-eu1",
                   "Applications per collection"):
        assert needle in text


def _capture_flow(capture: str, app: str, port: int, collection: str, payload: bytes = b"x") -> FlowExample:
    return FlowExample(capture, collection, ((True, payload),), port, PROTO_TCP, Label(app, "benign"))


def test_split_is_by_capture_within_each_collection() -> None:
    """Lab runs repeat file names, one folder each: a name held out of one
    run stays in the training part of another, and every collection with more
    than one capture is in both parts."""
    examples = [_capture_flow(f"{scenario}.pcapng", app, 1000 + i, collection=run, payload=bytes([i, ord(run)]))
                for run in "abcd" for i, (scenario, app) in enumerate([("dns", "DNS"), ("tls", "TLS"), ("http", "HTTP"),
                                                                        ("smtp", "SMTP"), ("ssh", "SSH")])]  # fmt: skip
    train, test = split(Corpus(examples=examples))
    held = {e.capture_id for e in test}
    assert held == dataset.test_captures(Corpus(examples=examples))
    assert {e.capture_id for e in train}.isdisjoint(held)
    assert {e.collection for e in train} == {e.collection for e in test} == set("abcd")
    assert all(sum(e.collection == run for e in test) == 1 for run in "abcd")  # 25 % of 5 captures: 1 per run
    assert len({e.capture for e in test}) > 1  # the runs hold out different scenarios
    assert "SMTP" in app_classes(train + [_capture_flow("smtp.pcapng", "SMTP", 25, collection=c) for c in "ab"] * 10,
                                 min_flows=20, min_captures=2)  # fmt: skip


def test_copies_of_a_capture_fall_on_one_side() -> None:
    pair = [_capture_flow(name, "TLS", 443, collection="mining", payload=b"same") for name in ("x.pcapng", "x.copy.pcapng")]
    others = [_capture_flow(f"m{i}.pcapng", "TLS", 443, collection="mining", payload=bytes([i])) for i in range(6)]
    train, test = split(Corpus(examples=pair + others))
    sides = {e.capture: ("test" if e in test else "train") for e in pair}
    assert len(set(sides.values())) == 1
