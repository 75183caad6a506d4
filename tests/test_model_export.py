"""ONNX export, int8, model bundles and the serving session (train extra needed)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from structlog.testing import capture_logs

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from netgptd.model.bundle import DEFAULT_BUNDLE, MODEL_FILE, BundleError, load_bundle  # noqa: E402
from netgptd.model.thresholds import Thresholds  # noqa: E402
from netgptd.model.port_prior import PortPrior  # noqa: E402
from netgptd.model.session import Classifier, ModelSession  # noqa: E402
from netgptd.model.tokenizer import CLS, TokenizerConfig, encode_flow, vocab_size  # noqa: E402
from netgptd.train import export  # noqa: E402
from netgptd.train.export import quantize_int8, write_bundle  # noqa: E402
from netgptd.train.labels import ATTACKS  # noqa: E402
from netgptd.train.model import ModelShape, NetGPT  # noqa: E402
from netgptd.train.trainer import _tensors  # noqa: E402

APPS = ("DNS", "HTTP", "TLS", "unknown")
SHAPE = ModelShape(layers=1, width=32, heads=2, positions=64)
TOKENIZER = TokenizerConfig(packets=2, header_bytes=16, payload_bytes=16, max_tokens=64)


def synthetic_rows(count: int, seed: int, min_length: int = 2) -> tuple[list[list[int]], list[int], list[int]]:
    """Rows whose bytes say both labels (application: the byte's quarter of
    0-255; attack: the byte modulo 7), up to 64 tokens: a task a one-layer
    model learns in a second and generalises on, so its predictions are
    confident and int8 agreement means something. A row of ``[CLS]`` alone
    says nothing (near-uniform logits, whose argmax int8 may flip), and no
    encoded flow is that short: only parity checks take ``min_length=1``."""
    rng = random.Random(seed)
    rows, apps, attacks = [], [], []
    for _ in range(count):
        app, attack = rng.randrange(len(APPS)), rng.randrange(len(ATTACKS))
        length = rng.randint(min_length, SHAPE.positions)
        rows.append([CLS] + [64 * app + 7 * rng.randrange(9) + attack for _ in range(length - 1)])
        apps.append(app)
        attacks.append(attack)
    return rows, apps, attacks


def train_tiny(steps: int = 80) -> NetGPT:
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = NetGPT(SHAPE, vocab_size(APPS), len(APPS), len(ATTACKS))
    rows, apps, attacks = synthetic_rows(2000, seed=1)
    app_y, attack_y = torch.tensor(apps), torch.tensor(attacks)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(steps):
        batch = torch.randint(0, len(rows), (32,), generator=generator)
        app_logits, attack_logits = net.classify(*_tensors([rows[i] for i in batch]))
        loss = torch.nn.functional.cross_entropy(app_logits, app_y[batch]) + torch.nn.functional.cross_entropy(
            attack_logits, attack_y[batch]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return net.eval()


@pytest.fixture(scope="module")
def model() -> NetGPT:
    return train_tiny()


@pytest.fixture(scope="module")
def bundle_dir(model: NetGPT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(
        tmp_path_factory.mktemp("bundle") / "netgpt", model, APPS, ATTACKS, TOKENIZER, SHAPE,
        training_summary={"flows": 2000, "source": "synthetic"}, evaluation={"app_accuracy": 1.0},
        name="netgpt-test", version="0.1",
    )  # fmt: skip


def torch_logits(model: NetGPT, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        app, attack = model.classify(*_tensors(rows))
    return app.numpy(), attack.numpy()


def onnx_logits(session: ort.InferenceSession, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    ids, mask = _tensors(rows)
    app, attack = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return app, attack


def cpu_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_trained_model_is_confident(model: NetGPT) -> None:
    rows, apps, attacks = synthetic_rows(300, seed=2)
    app, attack = torch_logits(model, rows)
    assert (app.argmax(1) == apps).mean() > 0.95
    assert (attack.argmax(1) == attacks).mean() > 0.95


def test_export_has_dynamic_batch_and_sequence(bundle_dir: Path) -> None:
    session = cpu_session(bundle_dir / MODEL_FILE)
    for i in session.get_inputs():
        assert i.type == "tensor(int64)"
        assert all(isinstance(dim, str) for dim in i.shape), i.shape
    assert [o.shape[1] for o in session.get_outputs()] == [len(APPS), len(ATTACKS)]


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_onnx_matches_torch(model: NetGPT, bundle_dir: Path, batch: int) -> None:
    session = cpu_session(bundle_dir / MODEL_FILE)
    longest = [CLS] + [64 + 7 * (i % 9) for i in range(SHAPE.positions - 1)]
    batches = [synthetic_rows(batch, seed=100 + 10 * batch + seed, min_length=1)[0] for seed in range(3)]
    for rows in batches + [[[CLS]] * batch, [longest] * batch]:  # mixed padded lengths, then 1 and 64 tokens
        for got, want in zip(onnx_logits(session, rows), torch_logits(model, rows)):
            assert got.shape == want.shape
            assert np.abs(got - want).max() < 1e-4


def test_int8_agrees_with_float(bundle_dir: Path, tmp_path: Path) -> None:
    quantized = quantize_int8(bundle_dir / MODEL_FILE, tmp_path / "int8.onnx")
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & {n.op_type for n in onnx.load(quantized).graph.node}
    assert quantized.stat().st_size < (bundle_dir / MODEL_FILE).stat().st_size
    rows = synthetic_rows(600, seed=3)[0]
    floats, int8s = onnx_logits(cpu_session(bundle_dir / MODEL_FILE), rows), onnx_logits(cpu_session(quantized), rows)
    for f, q in zip(floats, int8s):
        assert (f.argmax(1) == q.argmax(1)).mean() >= 0.99


def test_quantized_bundle(model: NetGPT, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Export is tested above and takes seconds: reuse its file.
    monkeypatch.setattr(export, "export_onnx", lambda _model, path: Path(shutil.copy(bundle_dir / MODEL_FILE, path)))
    bundle = load_bundle(write_bundle(tmp_path / "q", model, APPS, ATTACKS, TOKENIZER, SHAPE, {}, {},
                                      name="netgpt-test", version="0.1-int8", quantized=True))  # fmt: skip
    assert bundle.manifest["quantized"] is True
    assert bundle.model_file.stat().st_size < (bundle_dir / MODEL_FILE).stat().st_size
    assert ModelSession(bundle, prefer=("CPUExecutionProvider",)).classify([[CLS, 1, 2]])[0].shape == (1, len(APPS))


def test_bundle_round_trip(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.apps == APPS and bundle.attacks == ATTACKS
    assert bundle.tokenizer == TOKENIZER
    assert bundle.model_id == "netgpt-test@0.1"
    assert bundle.model_file == bundle_dir / MODEL_FILE
    assert bundle.manifest["training"] == {"flows": 2000, "source": "synthetic"}
    assert bundle.manifest["evaluation"] == {"app_accuracy": 1.0}
    assert bundle.manifest["shape"] == SHAPE.to_dict()


def test_write_bundle_checks_labels(model: NetGPT, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 apps"):
        write_bundle(tmp_path, model, APPS[:3], ATTACKS, TOKENIZER, SHAPE, {}, {}, name="x", version="1")


@pytest.fixture()
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def test_tampered_model_is_refused(bundle_copy: Path) -> None:
    model_path = bundle_copy / MODEL_FILE
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_path.write_bytes(data)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_copy)
    message = str(caught.value)
    assert message.startswith(f"{MODEL_FILE} in {bundle_copy} does not match its manifest (sha256 ")
    assert message.endswith("refusing to load") and "\n" not in message


@pytest.mark.parametrize("key", ["sha256", "tokenizer"])
def test_missing_manifest_key_is_named(bundle_copy: Path, key: str) -> None:
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest[key]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"lacks required key '{key}'"):
        load_bundle(bundle_copy)


def test_missing_bundle_and_model_file(bundle_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "absent")
    (bundle_copy / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=f"{MODEL_FILE} in .* is missing"):
        load_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(bundle_copy)
    assert DEFAULT_BUNDLE.name == "default" and DEFAULT_BUNDLE.parent.name == "model"


def test_session_reports_provider(model: NetGPT, bundle_dir: Path) -> None:
    with capture_logs() as events:
        session = ModelSession(load_bundle(bundle_dir))
    assert session.provider == ("CUDAExecutionProvider" if HAS_CUDA else "CPUExecutionProvider")
    assert "CUDAExecutionProvider" in session.requested
    loaded = [e for e in events if e["event"] == "model_loaded"]
    assert loaded == [{"event": "model_loaded", "log_level": "info", "name": "netgpt-test@0.1",
                       "provider": session.provider, "requested": list(session.requested)}]  # fmt: skip
    rows = synthetic_rows(5, seed=4)[0]
    app, attack = session.classify(rows)
    want_app, want_attack = torch_logits(model, rows)
    assert np.abs(app - torch.tensor(want_app).softmax(-1).numpy()).max() < 1e-5
    assert np.abs(attack - torch.tensor(want_attack).softmax(-1).numpy()).max() < 1e-5
    assert np.allclose(app.sum(1), 1.0)


HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA: the fallback cannot be staged")
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_session_warns_when_cuda_is_there_but_unused(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As with onnxruntime-gpu on a machine whose CUDA cannot start: CPU onnxruntime falls back the same way.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with capture_logs() as events:
        session = ModelSession(load_bundle(bundle_dir))
    assert session.provider == "CPUExecutionProvider"
    assert [e["event"] for e in events if e["log_level"] == "warning"] == ["model_provider_fallback"]


def test_session_refuses_unavailable_providers_and_mislabelled_models(bundle_copy: Path) -> None:
    with pytest.raises(ValueError, match="none of the execution providers NoSuchExecutionProvider"):
        ModelSession(load_bundle(bundle_copy), prefer=("NoSuchExecutionProvider",))
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["apps"] = manifest["apps"][:-1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="output app_logits has width 4, its manifest names 3 labels"):
        ModelSession(load_bundle(bundle_copy))


def flow(server_ip: bytes, server_port: int, payload: bytes, proto: int = 6) -> SimpleNamespace:
    return SimpleNamespace(first_packets=[(0, True, payload), (1, False, payload[::-1])], server_ip=server_ip,
                           server_port=server_port, proto=proto)  # fmt: skip


def test_verdict_cache_by_server_side(bundle_dir: Path) -> None:
    session = ModelSession(load_bundle(bundle_dir), prefer=("CPUExecutionProvider",))
    server = b"\x0a\x00\x00\x01"
    first, other_port = flow(server, 443, b"\x10" * 30), flow(server, 53, b"\x10" * 30)
    again = flow(server, 443, b"\xc7" * 30)  # other bytes: a cached verdict answers all the same
    classifier = Classifier(session, batch=2, cache_size=8)
    verdicts = classifier.verdicts([first])
    assert set(verdicts[0]) == {"app", "app_confidence", "attack", "attack_confidence", "model"}
    assert verdicts[0]["model"] == "netgpt-test@0.1" and verdicts[0]["app"] in APPS
    assert classifier.verdicts([again, other_port]) == [verdicts[0], Classifier(session).verdicts([other_port])[0]]
    assert (classifier.cache_hits, classifier.cache_misses) == (1, 2)
    uncached = Classifier(session, batch=2)
    assert uncached.verdicts([first, again, other_port])[0] == verdicts[0]
    assert (uncached.cache_hits, uncached.cache_misses) == (0, 0)


def test_verdict_cache_is_bounded(bundle_dir: Path) -> None:
    classifier = Classifier(ModelSession(load_bundle(bundle_dir), prefer=("CPUExecutionProvider",)), cache_size=1)
    a, b = flow(b"\x0a\x00\x00\x01", 80, b"x" * 20), flow(b"\x0a\x00\x00\x02", 80, b"x" * 20)
    classifier.verdicts([a, a])  # the second shares the first's inference
    classifier.verdicts([b])
    classifier.verdicts([a])  # evicted by b
    assert (classifier.cache_hits, classifier.cache_misses) == (1, 3)


def test_serving_never_imports_torch() -> None:
    code = (
        "import sys, netgptd.model.bundle, netgptd.model.session\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def prior_bundle(model: NetGPT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test bundle with a port prior: tcp/443 is TLS, udp/53 DNS, each in 40 flows of 4 captures."""
    flows = [((6, 443), f"web{i}", "TLS") for i in range(4) for _ in range(10)]
    flows += [((17, 53), f"dns{i}", "DNS") for i in range(4) for _ in range(10)]
    return write_bundle(
        tmp_path_factory.mktemp("prior") / "netgpt", model, APPS, ATTACKS, TOKENIZER, SHAPE, {}, {},
        name="netgpt-test", version="0.2", port_prior=PortPrior.fit(flows, APPS),
    )  # fmt: skip


def test_port_prior_rides_in_the_manifest_and_serving_applies_it(prior_bundle: Path) -> None:
    bundle = load_bundle(prior_bundle)
    assert bundle.port_prior is not None and set(bundle.port_prior.counts) == {(6, 443), (17, 53)}
    assert load_bundle(DEFAULT_BUNDLE).port_prior is not None
    session = ModelSession(bundle, prefer=("CPUExecutionProvider",))
    # Bytes the tiny model reads as "unknown" (quarter 3 of 0-255), sent to a port the prior knows as TLS.
    web, other = flow(b"\x0a\x00\x00\x01", 443, b"\xf0" * 30), flow(b"\x0a\x00\x00\x01", 8443, b"\xf0" * 30)
    rows = [encode_flow([(d, p) for _, d, p in f.first_packets], f.server_port, TOKENIZER) for f in (web, other)]
    model_p, _ = session.classify(rows)
    verdicts = Classifier(session).verdicts([web, other])
    fused = bundle.port_prior.apply(model_p, [(6, 443), (6, 8443)])
    assert [v["app"] for v in verdicts] == [APPS[i] for i in fused.argmax(1)]
    assert verdicts[0]["app_confidence"] == round(float(fused[0].max()), 4)
    assert verdicts[1]["app"] == APPS[int(model_p[1].argmax())]  # a port the prior never saw: the model alone
    # The bytes contradict TLS (below the prior's floor): the port, though it says TLS, does not raise it.
    tls = APPS.index("TLS")
    assert model_p[0][tls] < bundle.port_prior.floor and fused[0][tls] == pytest.approx(model_p[0][tls])


def test_port_blind_serving_masks_the_port_and_skips_the_prior(prior_bundle: Path) -> None:
    session = ModelSession(load_bundle(prior_bundle), prefer=("CPUExecutionProvider",))
    blind = Classifier(session, port_blind=True)
    assert blind.port_prior is None and blind.tokenizer.server_port is False
    web = flow(b"\x0a\x00\x00\x01", 443, b"\xf0" * 30)
    row = encode_flow([(d, p) for _, d, p in web.first_packets], 0, TOKENIZER)
    model_p, _ = session.classify([row])
    assert blind.verdicts([web])[0]["app_confidence"] == round(float(model_p[0].max()), 4)


def test_unreadable_port_prior_is_named(prior_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(prior_bundle, tmp_path / "copy"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["port_prior"]["ports"]["6/80"] = {"Gopher": 2}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="'port_prior' cannot be read: port 6/80: 'Gopher' is not one of"):
        load_bundle(copy)
    del manifest["port_prior"]["alpha"]
    manifest["port_prior"]["ports"].pop("6/80")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="'port_prior' cannot be read: lacks 'alpha'"):
        load_bundle(copy)


def test_thresholds_ride_in_the_manifest_and_serving_applies_them(model: NetGPT, tmp_path: Path) -> None:
    """A bundle whose thresholds no verdict of the tiny model reaches names every flow
    ``unknown`` and ``benign``, with the confidence that the likeliest class is wrong."""
    sure = write_bundle(tmp_path / "sure", model, APPS, ATTACKS, TOKENIZER, SHAPE, {}, {}, name="t", version="1",
                        thresholds=Thresholds(unknown_below=0.999, attack_at=0.999))  # fmt: skip
    bundle = load_bundle(sure)
    assert bundle.thresholds == Thresholds(0.999, 0.999)
    assert load_bundle(DEFAULT_BUNDLE).thresholds.unknown_below > 0
    session = ModelSession(bundle, prefer=("CPUExecutionProvider",))
    flows = [flow(b"\x0a\x00\x00\x01", 8443, bytes([b]) * 30) for b in (0x10, 0xf0)]
    rows = [encode_flow([(d, p) for _, d, p in f.first_packets], f.server_port, TOKENIZER) for f in flows]
    model_p, attack_p = session.classify(rows)
    for verdict, p, a in zip(Classifier(session).verdicts(flows), model_p, attack_p):
        assert verdict["app"] == "unknown" and verdict["attack"] == "benign"
        top_is_unknown = APPS[int(p.argmax())] == "unknown"
        assert verdict["app_confidence"] == round(float(p.max()) if top_is_unknown else 1 - float(p.max()), 4)
        top_is_benign = ATTACKS[int(a.argmax())] == "benign"
        assert verdict["attack_confidence"] == round(float(a.max()) if top_is_benign else 1 - float(a.max()), 4)
    manifest = json.loads((sure / "manifest.json").read_text())
    manifest["thresholds"] = {"unknown_below": 1.5}
    (sure / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"thresholds.unknown_below must be a number in \[0, 1\)"):
        load_bundle(sure)
