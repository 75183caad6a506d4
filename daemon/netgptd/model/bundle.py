"""A model bundle: ``model.onnx`` and the ``manifest.json`` that describes it.

Bundles written since generation exists also hold ``lm.onnx``, the LM
head (``netgptd generate``), named and checksummed in the manifest
(``lm_file``, ``lm_sha256``); older bundles load without it. Likewise the
server-port prior (``port_prior``, ``netgptd.model.port_prior``).

The manifest carries what serving needs beside the weights (the label
names of both heads, the tokenizer parameters the model was trained with)
and what a reader needs to trust it: the sha256 of the model file, a
summary of the training data and the evaluation table. A model file that
does not match its manifest is refused: serving a model under the wrong
labels or tokenizer would give confident nonsense.

No torch here: the daemon loads bundles with onnxruntime alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgptd.model.thresholds import Thresholds
from netgptd.model.port_prior import PortPrior
from netgptd.model.tokenizer import TokenizerConfig

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("app_logits", "attack_logits")
LM_FILE = "lm.onnx"
LM_OUTPUTS = ("logits",)
REQUIRED_KEYS = ("manifest_version", "name", "version", "model_file", "sha256", "apps", "attacks", "tokenizer")

# The model shipped inside the package.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default"


class BundleError(Exception):
    """A bundle that cannot be served; the message is one readable line."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    apps: tuple[str, ...]
    attacks: tuple[str, ...]
    tokenizer: TokenizerConfig
    name: str
    version: str
    model_file: Path
    lm_file: Path | None = None  # the LM head, for generation; None in bundles exported before it
    port_prior: PortPrior | None = None  # None in bundles exported before it
    thresholds: Thresholds = Thresholds()  # argmax verdicts in bundles exported before them

    @property
    def model_id(self) -> str:
        """``name@version``, as verdicts name their model."""
        return f"{self.name}@{self.version}"

    def model_bytes(self) -> bytes:
        """The model file's content, checked against the manifest's sha256.

        Serving builds its session from these bytes rather than the path, so
        the file checked is the file run.
        """
        return self._checked_bytes(self.model_file, str(self.manifest["sha256"]))

    def lm_bytes(self) -> bytes:
        """The LM file's content, checked against the manifest's ``lm_sha256``;
        ``BundleError`` when this bundle has no LM."""
        if self.lm_file is None:
            raise BundleError(f"the model bundle at {self.path} has no language model ({LM_FILE}): it was "
                              f"exported before generation existed; retrain it with 'netgptd train' to generate "
                              f"traffic")  # fmt: skip
        return self._checked_bytes(self.lm_file, str(self.manifest["lm_sha256"]))

    def _checked_bytes(self, file: Path, expected: str) -> bytes:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(f"{file.name} in {self.path} cannot be read: {exc.strerror or exc}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleError(
                f"{file.name} in {self.path} does not match its manifest "
                f"(sha256 {actual[:12]}… != {expected[:12]}…): refusing to load"
            )
        return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _labels(manifest: dict[str, Any], key: str, where: Path) -> tuple[str, ...]:
    labels = manifest[key]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise BundleError(f"{MANIFEST_FILE} in {where}: '{key}' must be a non-empty list of names")
    return tuple(labels)


def _file_name(manifest: dict[str, Any], key: str, where: Path) -> str:
    name = str(manifest[key])
    if Path(name).name != name or name in ("", ".", ".."):
        raise BundleError(f"{MANIFEST_FILE} in {where}: {key} {name!r} must be a file name in the bundle")
    return name


def _port_prior(manifest: dict[str, Any], apps: tuple[str, ...], where: Path) -> PortPrior | None:
    if manifest.get("port_prior") is None:
        return None
    try:
        return PortPrior.from_dict(manifest["port_prior"], apps)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BundleError(f"{MANIFEST_FILE} in {where}: 'port_prior' cannot be read: {detail}") from None


def _thresholds(manifest: dict[str, Any], where: Path) -> Thresholds:
    values = manifest.get("thresholds") or {}
    if not isinstance(values, dict):
        raise BundleError(f"{MANIFEST_FILE} in {where}: 'thresholds' must be an object")
    read = {}
    for key in ("unknown_below", "attack_at"):
        value = values.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise BundleError(f"{MANIFEST_FILE} in {where}: thresholds.{key} must be a number in [0, 1)")
        read[key] = float(value)
    return Thresholds(**read)


def load_bundle(directory: str | Path) -> Bundle:
    """Read and check a bundle; raises ``BundleError`` naming what is wrong."""
    path = Path(directory)
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise BundleError(f"no model bundle at {path}: not a directory")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"no model bundle at {path}: {MANIFEST_FILE} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST_FILE} in {path} cannot be read: {exc}") from None
    except RecursionError:
        raise BundleError(f"{MANIFEST_FILE} in {path} cannot be read: nested too deeply") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST_FILE} in {path} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{MANIFEST_FILE} in {path} lacks required key {', '.join(repr(k) for k in missing)}")
    if manifest["manifest_version"] != MANIFEST_VERSION:
        raise BundleError(
            f"{MANIFEST_FILE} in {path} has manifest_version {manifest['manifest_version']!r}; "
            f"this netgptd reads version {MANIFEST_VERSION}"
        )
    model_name = _file_name(manifest, "model_file", path)
    lm_name = _file_name(manifest, "lm_file", path) if manifest.get("lm_file") is not None else None
    if lm_name is not None and "lm_sha256" not in manifest:
        raise BundleError(f"{MANIFEST_FILE} in {path} names lm_file {lm_name!r} but lacks required key 'lm_sha256'")
    if not isinstance(manifest["tokenizer"], dict):
        raise BundleError(f"{MANIFEST_FILE} in {path}: 'tokenizer' must be an object")
    apps = _labels(manifest, "apps", path)
    try:
        tokenizer = TokenizerConfig.from_dict(manifest["tokenizer"])
    except ValueError as exc:
        raise BundleError(f"{MANIFEST_FILE} in {path}: tokenizer {exc}") from None
    bundle = Bundle(
        path=path,
        manifest=manifest,
        apps=apps,
        attacks=_labels(manifest, "attacks", path),
        tokenizer=tokenizer,
        name=str(manifest["name"]),
        version=str(manifest["version"]),
        model_file=path / model_name,
        lm_file=path / lm_name if lm_name is not None else None,
        port_prior=_port_prior(manifest, apps, path),
        thresholds=_thresholds(manifest, path),
    )
    if not bundle.model_file.is_file():
        raise BundleError(f"{model_name} in {path} is missing")
    bundle.model_bytes()
    if bundle.lm_file is not None:
        if not bundle.lm_file.is_file():
            raise BundleError(f"{lm_name} in {path} is missing")
        bundle.lm_bytes()
    return bundle
