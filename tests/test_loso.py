"""Generalisation is measured on sources never trained on: the corpus's unlabelled
``extra/`` captures labelled by ndpiReader, and leave-one-source-out folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.model.tokenizer import TokenizerConfig
from netgptd.synth import frames
from netgptd.train import ndpi_reader
from netgptd.train.dataset import FlowExample, load_corpus, source_of
from netgptd.train.labels import Label, label_source, labeller_for
from netgptd.train.ndpi_reader import NdpiReaderError

EXTRA_CAPTURE = "extra/chrissanders__packets/aurora.pcapng"  # one HTTP flow (DPI) and one Unknown


def _extra_capture(corpus: Path) -> Path:
    path = corpus / EXTRA_CAPTURE
    if not path.is_file():
        pytest.skip(f"{EXTRA_CAPTURE} is not in the corpus at {corpus}")
    if shutil.which("ndpiReader") is None:
        pytest.skip("ndpiReader is not installed (Debian libndpi-bin)")
    return path


def test_extra_captures_are_labelled_by_ndpi_reader_once(corpus: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    capture = _extra_capture(corpus)
    monkeypatch.setenv(ndpi_reader.CACHE_ENV, str(tmp_path))
    assert label_source(capture) == "ndpiReader" and source_of(capture) == "extra/chrissanders__packets"
    labeller = labeller_for(capture)
    assert labeller is not None
    client, server = ("192.168.100.206", 1031), ("192.168.100.202", 80)
    assert labeller("TCP", client, server, "") == Label("HTTP", "benign")
    assert labeller("TCP", ("192.168.100.206", 1032), ("192.168.100.202", 4321), "") == Label("unknown", "benign")
    cached = list(tmp_path.rglob("*.out"))
    assert len(cached) == 1 and cached[0].parent.name == ndpi_reader.ndpi_version()
    # Read again without ndpiReader on the PATH: the cache answers.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert labeller_for(capture)("TCP", server, client, "") == Label("HTTP", "benign")  # type: ignore[misc]


def test_without_ndpi_reader_an_extra_capture_is_skipped_not_fatal(corpus: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    capture = _extra_capture(corpus)
    monkeypatch.setenv(ndpi_reader.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    ndpi_reader.ndpi_version.cache_clear()
    try:
        with pytest.raises(NdpiReaderError, match="ndpiReader is not installed \\(Debian package libndpi-bin\\)"):
            labeller_for(capture)
        loaded = load_corpus([capture, corpus / "mining"], TokenizerConfig(), progress=False)
    finally:
        ndpi_reader.ndpi_version.cache_clear()
    assert loaded.examples and all(e.source == "mining" for e in loaded.examples)


# -- leave one source out, on flows made for it ------------------------------------------------

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
PAYLOADS = {"DNS": b"\x12\x34\x01\x00\x00\x01", "HTTP": b"GET / HTTP/1.1\r\n", "TLS": b"\x16\x03\x01\x02\x00\x01"}


def _packet(proto: int, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    l4 = frames.udp if proto == PROTO_UDP else frames.tcp
    kwargs = {} if proto == PROTO_UDP else {"flags": "PA"}
    return frames.ip(src[0], dst[0], proto, l4(src[0], dst[0], src[1], dst[1], payload=payload, **kwargs))


def _flows(source: str, ports: dict[str, int]) -> list[FlowExample]:
    """Four captures of ``source``, each with ten flows of every app on ``ports``."""
    out = []
    for capture in range(4):
        for app, payload in PAYLOADS.items():
            proto = PROTO_UDP if app == "DNS" else PROTO_TCP
            for i in range(10):
                data = payload + bytes([capture, i])
                packets = ((True, _packet(proto, (CLIENT, 40000 + i), (SERVER, ports[app]), data)),
                           (False, _packet(proto, (SERVER, ports[app]), (CLIENT, 40000 + i), data[::-1])))  # fmt: skip
                out.append(FlowExample(f"{source}{capture}.pcap", source, packets, ports[app], proto,
                                       Label(app, "benign"), source))  # fmt: skip
    return out


def test_each_source_is_judged_by_a_model_and_a_port_lookup_that_never_saw_it() -> None:
    pytest.importorskip("torch")
    from netgptd.train.loso import leave_one_source_out
    from netgptd.train.loso_report import render_loso
    from netgptd.train.model import ModelShape
    from netgptd.train.trainer import TrainSettings, seed_everything

    usual = {"DNS": 53, "HTTP": 80, "TLS": 443}
    # Source c runs its services on other ports, TLS on 80 among them.
    examples = _flows("a", usual) + _flows("b", usual) + _flows("c", {"DNS": 5353, "HTTP": 8080, "TLS": 80})
    examples += [FlowExample("tiny.pcap", "d", ((True, b"x"),), 1, PROTO_TCP, Label("HTTP", "benign"), "d")] * 5
    seed_everything(0, 1)
    tokenizer = TokenizerConfig(packets=2, header_bytes=8, payload_bytes=16, max_tokens=64)
    result = leave_one_source_out(examples, tokenizer, ModelShape(layers=1, width=32, heads=2, positions=72),
                                  TrainSettings(pretrain_epochs=1, finetune_epochs=10, batch=16, threads=1),
                                  progress=False)  # fmt: skip
    json.dumps(result)
    rows = {r["source"]: r for r in result["sources"]}
    assert set(rows) == {"a", "b", "c"}  # d has too few flows to be held out alone
    assert all(r["test_flows"] == 120 and r["test_captures"] == 4 for r in rows.values())
    assert result["pooled"]["flows"] == 360
    # Held out, c's ports mislead a lookup fitted on a and b (TLS on 80 reads as HTTP)...
    assert rows["c"]["scorers"]["port lookup"]["accuracy"] <= 2 / 3
    assert rows["a"]["scorers"]["port lookup"]["accuracy"] == 1.0
    # ...while the bytes carry over: the model port-blind names c's flows.
    assert rows["c"]["scorers"]["NetGPT port-blind"]["accuracy"] >= 0.9
    text = render_loso(result)
    assert "Leave one source out" in text and "pooled" in text and all(f"\n  {s} " in text for s in "abc")
