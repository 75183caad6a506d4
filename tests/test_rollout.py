"""Model rollout: a signed bundle announced on MQTT is fetched, checked and served by running sensors.

The fast tests check the parts (``netgptd.model.announce``: Ed25519 signatures
through openssl; ``netgptd.model.archive``: pack, hash check, safe unpack).
The slow one runs real sensors (``netgptd run`` replaying the mining capture)
and a real mosquitto: three with ``[plugins.rollout]`` and, side by side in
the same run, one without it. A new release announced with ``netgptd model
publish`` mid-capture is served by all three (flows after it carry the new
version, and every sensor reports it on ``<prefix>model`` and in
``netgpt_model_info``) without losing a flow: each writes as many flow
events as the sensor without rollout. Then a tampered archive (bytes changed
after signing) and a release signed by an unknown key are refused, counted
by reason, and the release before keeps serving.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from broker import Mosquitto, Subscriber, free_port, mosquitto  # noqa: F401 -- the fixture
from fleet import bundle_version, publish, rollout_config, rollout_keys, sensor, served, wait_until
from netgptd.model.announce import SigningKeyError, check_key, problem, sign, verify
from netgptd.model.archive import ArchiveError, pack, unpack
from netgptd.model.bundle import DEFAULT_BUNDLE
from test_daemon import MINING
from test_reload import metric_sum, scrape

REPO = Path(__file__).resolve().parent.parent


def announcement_of(bundle: Path, archive: Path, key: Path) -> dict:
    built, sha256, size = pack(bundle, archive)
    return sign({"name": built.name, "version": built.version, "url": str(archive), "sha256": sha256, "size": size},
                key)  # fmt: skip


def test_a_signature_covers_every_field_and_only_the_pinned_key_makes_it(tmp_path: Path) -> None:
    keys = rollout_keys(tmp_path)
    signed = announcement_of(DEFAULT_BUNDLE, tmp_path / "a.tar.gz", keys.private)
    assert problem(signed) == "" and verify(signed, keys.public) == ""
    for key, value in (("version", "9.9.9"), ("url", "/elsewhere.tar.gz"), ("sha256", "0" * 64), ("size", 1)):
        assert verify({**signed, key: value}, keys.public) == "bad_signature", key
    strange = sign({k: v for k, v in signed.items() if k != "sig"}, keys.stranger)
    assert verify(strange, keys.public) == "bad_signature"
    assert verify({k: v for k, v in signed.items() if k != "sig"}, keys.public) == "unsigned"
    assert problem({**signed, "size": "1"}) == "'size' must be a int"
    assert problem({**signed, "sha256": "XY"}) == "'sha256' must be 64 lowercase hex digits"
    assert problem([]) == "not a JSON object"
    with pytest.raises(SigningKeyError, match="not an Ed25519 public key"):
        check_key(keys.private, public=True)
    with pytest.raises(SigningKeyError, match="no such file"):
        check_key(tmp_path / "absent.pub", public=True)


def test_an_archive_is_served_only_when_its_hash_and_its_bundle_check_out(tmp_path: Path) -> None:
    bundle, sha256, size = pack(DEFAULT_BUNDLE, tmp_path / "a.tar.gz")
    data = (tmp_path / "a.tar.gz").read_bytes()
    assert len(data) == size
    served_bundle = unpack(data, sha256, tmp_path / "models")
    assert served_bundle.path == tmp_path / "models" / sha256 and served_bundle.model_id == bundle.model_id
    assert unpack(data, sha256, tmp_path / "models").path == served_bundle.path  # unpacked once, loaded again

    with pytest.raises(ArchiveError, match="sha256") as bad:
        unpack(data[:-1] + bytes([data[-1] ^ 1]), sha256, tmp_path / "models")
    assert bad.value.reason == "bad_hash"

    def archive(entries: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, content in entries.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    escaping = archive({"../escaped": b"x"})
    with pytest.raises(ArchiveError, match="only plain files at the top level") as bad:
        unpack(escaping, hashlib.sha256(escaping).hexdigest(), tmp_path / "models")
    assert bad.value.reason == "bad_bundle" and not (tmp_path / "escaped").exists()

    files = {p.name: p.read_bytes() for p in DEFAULT_BUNDLE.iterdir() if p.is_file()}
    files["model.onnx"] = files["model.onnx"][:-1] + b"\0"  # weights that are not the manifest's
    swapped = archive(files)
    with pytest.raises(ArchiveError, match="does not match its manifest") as bad:
        unpack(swapped, hashlib.sha256(swapped).hexdigest(), tmp_path / "models")
    assert bad.value.reason == "bad_bundle"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [sha256], "nothing half-unpacked stays"


@pytest.mark.corpus
def test_run_names_a_rollout_key_that_cannot_be_used(corpus: Path, tmp_path: Path) -> None:
    keys = rollout_keys(tmp_path)
    for key, why in ((keys.private, "not an Ed25519 public key"), (tmp_path / "none.pub", "no such file")):
        config = tmp_path / "netgptd.toml"
        config.write_text(f'[plugins.rollout]\npublic_key = "{key}"\n', encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "netgptd", "run", "--config", str(config), "--state-dir",
                               str(tmp_path / "state"), "--source", f"pcap:{corpus / MINING}"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2 and f"[plugins.rollout] {key}: {why}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def model_versions(flows: list[dict]) -> list[str]:
    """The model version of each classified flow, in EVE order."""
    return [f["netgpt"]["model"].rsplit("@", 1)[1] for f in flows if f["netgpt"].get("model")]


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.timeout(120)
def test_a_release_rolls_out_mid_run_without_losing_flows_and_bad_ones_are_refused(
        corpus: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:  # fmt: skip
    keys = rollout_keys(tmp_path / "keys")
    v2, v3 = bundle_version(tmp_path, "0.2.0"), bundle_version(tmp_path, "0.3.0")
    config = rollout_config(tmp_path / "config", keys.public, mosquitto)
    capture = corpus / MINING
    names = ["r1", "r2", "r3"]
    topic = "netgpt/lab/_models/current"
    with Subscriber(mosquitto, "netgpt/lab/+/model") as reports:
        addresses = {n: f"127.0.0.1:{free_port()}" for n in names}
        daemons = {n: sensor(tmp_path / n, "lab", n, mosquitto, capture, 1.0, "--config", str(config),
                             metrics=addresses[n]) for n in names}  # fmt: skip
        daemons["plain"] = sensor(tmp_path / "plain", "lab", "plain", mosquitto, capture, 1.0)
        try:
            wait_until(lambda: set(served(reports.messages)) >= {f"lab/{n}" for n in names}, 30, "rollout connected")
            wait_until(lambda: all(d.events("flow") for d in daemons.values()), 30, "first flows")
            published = subprocess.run(
                [sys.executable, "-m", "netgptd", "model", "publish", str(v2), "--archive", str(tmp_path / "v2.tar.gz"),
                 "--signing-key", str(keys.private), "--site", "lab", "--broker", mosquitto.url],
                capture_output=True, text=True, timeout=30, env=os.environ)  # fmt: skip
            assert published.returncode == 0, published.stderr
            wait_until(lambda: all(served(reports.messages).get(f"lab/{n}", {}).get("serving", {}).get("version")
                                   == "0.2.0" for n in names), 20, "0.2.0 served everywhere")  # fmt: skip
            assert all(d.process.poll() is None for d in daemons.values()), "the rollout came after the capture"

            tampered = announcement_of(v3, tmp_path / "v3.tar.gz", keys.private)
            data = bytearray((tmp_path / "v3.tar.gz").read_bytes())
            data[len(data) // 2] ^= 1
            (tmp_path / "v3.tar.gz").write_bytes(bytes(data))
            publish(mosquitto, topic, json.dumps(tampered).encode())
            wait_until(lambda: all((served(reports.messages)[f"lab/{n}"].get("refused") or {}).get("reason")
                                   == "bad_hash" for n in names), 20, "the tampered archive refused")  # fmt: skip
            strange = announcement_of(v3, tmp_path / "v3-strange.tar.gz", keys.stranger)
            publish(mosquitto, topic, json.dumps(strange).encode())
            wait_until(lambda: all((served(reports.messages)[f"lab/{n}"].get("refused") or {}).get("reason")
                                   == "bad_signature" for n in names), 20, "the stranger's release refused")  # fmt: skip
            metrics: dict[str, dict[str, float]] = {}

            def counted() -> bool:  # the stats event after the refusal (every 0.5 s) reaches the metrics
                metrics.update({n: scrape(addresses[n]) for n in names})
                return all(metric_sum(metrics[n], "netgpt_rollout_refused_total") == 2 for n in names)

            wait_until(counted, 10, "the refusals in the metrics")
            daemons["r1"].signal(signal.SIGHUP)  # a reload keeps the rolled-out model over [model] path
            reloaded = daemons["r1"].wait_for_log("reloaded")
            assert reloaded["model"]["version"] == "0.2.0", reloaded
            for daemon in daemons.values():
                assert daemon.wait(60) == 0
        finally:
            for daemon in daemons.values():
                daemon.kill()
        reports_at_end = served(reports.messages)

    # The plain sensor runs the rule detectors, so a flood's flows past the budget come as summaries: count them.
    plain = daemons["plain"]
    baseline = len(plain.events("flow")) + sum(e["flood_summary"]["flows"] for e in plain.events("flood_summary"))
    assert baseline > 1000
    for n in names:
        flows = daemons[n].events("flow")
        assert len(flows) == baseline, f"{n}: {len(flows)} flows, {baseline} without rollout"
        versions = model_versions(flows)
        assert versions[0] == "0.1.0" and versions[-1] == "0.2.0" and set(versions) == {"0.1.0", "0.2.0"}, n
        assert reports_at_end[f"lab/{n}"]["serving"]["version"] == "0.2.0"
        series = metrics[n]
        assert series['netgpt_model_info{name="netgpt-small@0.2.0",provider="CPUExecutionProvider",version="0.2.0"}'] == 1
        assert metric_sum(series, "netgpt_rollout_applied_total") == 1
        assert series['netgpt_rollout_refused_total{reason="bad_hash"}'] == 1
        assert series['netgpt_rollout_refused_total{reason="bad_signature"}'] == 1
        refusals = [e for e in daemons[n].entries() if e.get("event") == "model_refused"]
        assert [e["reason"] for e in refusals] == ["bad_hash", "bad_signature"]
        assert all(e["serving"] == "0.2.0" for e in refusals)
