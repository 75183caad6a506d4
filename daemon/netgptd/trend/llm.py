"""Edge LLM forecaster: a small GPT-2 that reads recent values as text and writes the next ones.

The prompt is a fixed-length sequence of words (one token each, or one per
character for the free-text site and location fields)::

    <bos> site= h o m e · · · · loc= b e r l i n · · time= h14 day= tue
    season= m288 scale= z5 zero= -3.2 lag= 0.4 0.1 ... recent= -0.3 0.0 ... next=

and the model continues with ``HORIZON`` numbers and ``<eos>``. Every number
is a value of the series in *window units*: ``(value - center) / scale``,
where ``center`` is the median of the last ``CENTER_POINTS`` values and
``scale`` a robust spread of the last ``CONTEXT`` values (1.4826 MAD, else
the mean absolute deviation, else 1). So the model always predicts a
correction relative to the recent median, whatever the units and size of the
series, and the ``zero=`` field tells it where 0 lies (counts never go below).
Numbers are written with one decimal below 10 (``-9.9`` .. ``9.9``) and as
integers up to 99 beyond; larger ones are clipped.

``lag=`` holds the values one season before the forecast horizon (and
``LAG_BEFORE`` before that), ``?`` where there is no season or not enough
history; ``time=``/``day=`` are the local time of the forecast origin, ``?``
where unknown (``trend eval`` passes values only, so it is always ``?`` there).

Decoding is constrained to number tokens, so the model cannot write anything
else; the default takes the *median* of each step's predicted distribution
(MAE is minimised by the median, not the mode), ``greedy`` the argmax. The
generated ids are turned back into text and parsed (``parse_forecast``): a
forecast with bad or missing fields is repaired from its valid neighbours or,
with fewer than half of its fields valid, rejected; a rejected forecast is
replaced by the named fallback forecaster. All three are counted
(``EdgeLLMForecaster.stats``). Nothing non-finite is ever returned.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import structlog

from netgptd.llm.runtime import load_causal_lm

log = structlog.get_logger(__name__)

PROMPT_FORMAT = 1
MANIFEST_FORMAT = "netgptd-trend-llm"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_llm"
MODEL_ENV = "NETGPTD_TREND_LLM"  # replaces the shipped model (a local HF causal-LM directory)
ADAPTER_ENV = "NETGPTD_TREND_LLM_ADAPTER"  # a LoRA adapter folder on top of it

HORIZON = 12  # numbers the model writes per prompt; longer horizons are forecast in chunks
CONTEXT = 64  # recent values in the prompt
CENTER_POINTS = 12  # the median of these is the centre of the window units
LAG_BEFORE = 4  # seasonal-lag values before the one aligned with the first forecast step
NAME_CHARS = 8  # site and location are written as this many characters (padded or cut)
MIN_HISTORY = 8  # a shorter history goes to the fallback forecaster
NUMBER_LIMIT = 99  # largest magnitude a number token can hold
SEASON_TOKENS = (1, 12, 24, 48, 96, 144, 168, 288, 1440, 2016, 10080)
SCALE_EXPONENTS = range(-20, 41)  # z-20 .. z40: floor(log2(scale))
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

PAD, BOS, EOS, MISSING, BLANK = "<pad>", "<bos>", "<eos>", "?", "·"
FIELDS = ("site=", "loc=", "time=", "day=", "season=", "scale=", "zero=", "lag=", "recent=", "next=")
NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_."


def _number_words() -> list[str]:
    small = [f"{i / 10:.1f}" for i in range(-99, 100)]
    return [str(i) for i in range(-NUMBER_LIMIT, -9)] + small + [str(i) for i in range(10, NUMBER_LIMIT + 1)]


def default_vocabulary() -> list[str]:
    """Every word of prompt format 1, in id order (specials first, numbers last, ascending)."""
    return ([PAD, BOS, EOS, MISSING, BLANK, *FIELDS, *NAME_ALPHABET]
            + [f"h{h:02d}" for h in range(24)] + list(DAYS)
            + [f"m{s}" for s in SEASON_TOKENS] + ["m*"]
            + [f"z{e}" for e in SCALE_EXPONENTS] + _number_words())  # fmt: skip


class TrendTokenizer:
    """Word-level tokenizer: one id per word of the vocabulary, numbers ordered by value."""

    def __init__(self, words: Sequence[str] | None = None) -> None:
        self.words = list(words or default_vocabulary())
        self.ids = {word: i for i, word in enumerate(self.words)}
        if len(self.ids) != len(self.words):
            raise ValueError("vocabulary holds a word twice")
        # Single characters are the site/location alphabet, never number words (those hold a
        # decimal point below 10).
        numbers = [(float(w), i) for i, w in enumerate(self.words) if len(w) > 1 and NUMBER_PATTERN.match(w)]
        numbers.sort()
        self.number_values = np.array([v for v, _ in numbers])
        self.number_ids = np.array([i for _, i in numbers], dtype=np.int64)
        self.pad, self.bos, self.eos, self.missing, self.blank = (self.ids[w] for w in (PAD, BOS, EOS, MISSING, BLANK))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.ids[w] for w in words]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] if 0 <= i < len(self.words) else PAD for i in ids)

    def number_tokens(self, values: np.ndarray) -> np.ndarray:
        """Ids of the number words nearest to ``values`` (window units); NaN gives ``?``."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        clipped = np.clip(np.where(finite, values, 0.0), -NUMBER_LIMIT, NUMBER_LIMIT)
        # Nearest number word: the words are sorted, so compare with both neighbours.
        right = np.clip(np.searchsorted(self.number_values, clipped), 1, len(self.number_values) - 1)
        left = right - 1
        nearer_left = np.abs(clipped - self.number_values[left]) <= np.abs(self.number_values[right] - clipped)
        ids = self.number_ids[np.where(nearer_left, left, right)]
        return np.where(finite, ids, self.missing)

    def name_tokens(self, text: str | None) -> list[int]:
        chars = [c for c in (text or "").lower() if c in NAME_ALPHABET][:NAME_CHARS]
        return [self.ids[c] for c in chars] + [self.blank] * (NAME_CHARS - len(chars))


NUMBER_PATTERN = re.compile(r"^[+-]?\d{1,3}(?:\.\d{1,2})?$")


@dataclass(frozen=True)
class PromptContext:
    """What the prompt says about where and when: all optional."""

    site: str | None = None
    location: str | None = None
    when: datetime | None = None  # local time of the forecast origin


@dataclass
class Prompt:
    ids: np.ndarray  # int64, PROMPT_LENGTH
    center: float
    scale: float


PROMPT_LENGTH = 1 + 2 * (1 + NAME_CHARS) + 5 * 2 + (1 + LAG_BEFORE + HORIZON) + (1 + CONTEXT) + 1


def window_units(history: np.ndarray) -> tuple[float, float]:
    """``(center, scale)`` of the window units for a forecast after ``history``."""
    recent = history[-CONTEXT:]
    center = float(np.median(history[-CENTER_POINTS:]))
    median = float(np.median(recent))
    scale = 1.4826 * float(np.median(np.abs(recent - median)))
    if not scale > 0:
        scale = float(np.mean(np.abs(recent - median)))
    if not scale > 0:
        scale = max(abs(center) * 0.01, 1e-6) if center else 1.0
    return center, scale


def seasonal_lags(history: np.ndarray, season: int) -> np.ndarray:
    """Values one season before steps ``-LAG_BEFORE .. HORIZON-1`` of the forecast (NaN where none)."""
    lags = np.full(LAG_BEFORE + HORIZON, np.nan)
    if season <= 1:
        return lags
    t = len(history)
    steps = np.arange(-LAG_BEFORE, HORIZON)
    # A step past the first season repeats the last observed one (seasonal naive).
    back = season * np.maximum(1, np.ceil((steps + 1) / season)).astype(int)
    index = t + steps - back
    ok = (index >= 0) & (index < t)
    lags[ok] = history[index[ok]]
    return lags


def build_prompt(tok: TrendTokenizer, history: np.ndarray, season: int,
                 context: PromptContext | None = None) -> Prompt:  # fmt: skip
    """The prompt for forecasting the steps after ``history`` (at least one value, all finite)."""
    history = np.asarray(history, dtype=np.float64)
    context = context or PromptContext()
    center, scale = window_units(history)
    recent = np.full(CONTEXT, np.nan)
    tail = history[-CONTEXT:]
    recent[CONTEXT - len(tail):] = tail
    units = lambda x: (x - center) / scale  # noqa: E731
    season_word = f"m{season}" if season in SEASON_TOKENS else "m*"
    exponent = min(max(math.floor(math.log2(scale)), SCALE_EXPONENTS.start), SCALE_EXPONENTS.stop - 1)
    when = context.when
    ids = [tok.bos, tok.ids["site="], *tok.name_tokens(context.site), tok.ids["loc="],
           *tok.name_tokens(context.location),
           tok.ids["time="], tok.ids[f"h{when.hour:02d}"] if when else tok.missing,
           tok.ids["day="], tok.ids[DAYS[when.weekday()]] if when else tok.missing,
           tok.ids["season="], tok.ids[season_word], tok.ids["scale="], tok.ids[f"z{exponent}"],
           tok.ids["zero="], int(tok.number_tokens(np.array([units(0.0)]))[0]),
           tok.ids["lag="], *tok.number_tokens(units(seasonal_lags(history, season))),
           tok.ids["recent="], *tok.number_tokens(units(recent)), tok.ids["next="]]  # fmt: skip
    return Prompt(np.array(ids, dtype=np.int64), center, scale)


@dataclass
class ParsedForecast:
    """Numbers read back from the model's text: ``status`` ok, repaired or rejected."""

    values: np.ndarray | None
    status: str
    problems: list[str] = field(default_factory=list)


def parse_forecast(text: str, horizon: int, min_valid: float = 0.5, limit: float = NUMBER_LIMIT) -> ParsedForecast:
    """Read ``horizon`` numbers from the model's continuation (up to ``<eos>``).

    Each whitespace-separated word is one field. A field that is not a plain
    decimal (``-1.3``, ``42``; no ``nan``/``inf``/exponents) is invalid;
    magnitudes beyond ``limit`` are clipped. Extra fields are cut, missing ones
    (a truncated output) are added as invalid. Invalid fields are then filled
    from the previous valid one (leading ones from the first valid one): the
    forecast is *repaired*. Fewer than ``min_valid * horizon`` valid fields,
    and it is *rejected* (``values`` None).
    """
    words = text.split()
    if EOS in words:
        words = words[: words.index(EOS)]
    words = [w for w in words if w not in (BOS, PAD)]
    problems: list[str] = []
    fields: list[float | None] = []
    for word in words:
        if not NUMBER_PATTERN.match(word):
            fields.append(None)
            continue
        value = float(word)
        if abs(value) > limit:
            problems.append(f"clipped {word}")
            value = math.copysign(limit, value)
        fields.append(value)
    if len(fields) > horizon:
        problems.append(f"{len(fields)} fields for {horizon} steps: cut")
        fields = fields[:horizon]
    elif len(fields) < horizon:
        problems.append(f"{len(fields)} fields for {horizon} steps: truncated")
        fields += [None] * (horizon - len(fields))
    bad = sum(v is None for v in fields)
    if bad:
        problems.append(f"{bad} invalid or missing fields")
    if horizon - bad < max(1, math.ceil(min_valid * horizon)):
        return ParsedForecast(None, "rejected", problems)
    first = next(v for v in fields if v is not None)
    values, previous = [], first
    for v in fields:
        previous = v if v is not None else previous
        values.append(previous)
    return ParsedForecast(np.array(values, dtype=np.float64), "repaired" if problems else "ok", problems)


# --- model loading ---------------------------------------------------------------------------


@dataclass
class EdgeLLM:
    """A loaded model with its tokenizer and manifest (``{}`` for a directory without one)."""

    model: Any
    tokenizer: TrendTokenizer
    manifest: dict
    source: str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        params = inspect.signature(self.model.forward).parameters
        # transformers 5 calls the KV cache ``cache``; 4.x ``past_key_values``.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params

    def continuations(self, prompts: np.ndarray, steps: int, decoding: str = "median",
                      constrained: bool = True) -> list[str]:  # fmt: skip
        """The text each prompt (rows of ids) continues with, ``steps`` words at most (KV cache)."""
        import torch

        tok = self.tokenizer
        number_ids = torch.from_numpy(tok.number_ids)
        chosen = []
        with self._lock, torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(prompts, dtype=np.int64))
            extra = {"logits_to_keep": 1} if self._keep_arg else {}
            out = self.model(input_ids=ids, use_cache=True, **extra)
            for step in range(steps):
                logits = out.logits[:, -1, :].float()
                if constrained:
                    numbers = logits[:, number_ids]
                    if decoding == "median":
                        cdf = torch.cumsum(torch.softmax(numbers, dim=-1), dim=-1)
                        index = (cdf < 0.5).sum(dim=-1).clamp(max=len(number_ids) - 1)
                    else:
                        index = numbers.argmax(dim=-1)
                    next_ids = number_ids[index]
                else:
                    next_ids = logits.argmax(dim=-1)
                chosen.append(next_ids)
                if step + 1 < steps:
                    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
                    out = self.model(input_ids=next_ids[:, None], use_cache=True, **{self._cache_arg: cache})
        rows = torch.stack(chosen, dim=1).tolist() if chosen else [[] for _ in range(len(prompts))]
        return [tok.decode(row) for row in rows]


_LOADED: dict[tuple, EdgeLLM] = {}


def _stamp(path: Path | None) -> tuple:
    if path is None:
        return (None,)
    files = sorted(p for p in path.iterdir() if p.is_file())
    return (str(path.resolve()), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def load_edge_llm(model_dir: Path | str | None = None, adapter_dir: Path | str | None = None) -> EdgeLLM:
    """Load a local causal LM directory (default: the shipped model) plus an optional LoRA adapter.

    Nothing is downloaded (``local_files_only``). A directory with a
    ``manifest.json`` brings its own vocabulary; one without must use the
    built-in vocabulary of prompt format 1. Loaded models are cached per
    directory contents. An adapter is merged into the weights (no
    per-forecast cost).
    """
    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    adapter = Path(adapter_dir) if adapter_dir else None
    key = (_stamp(model_dir), _stamp(adapter))
    if key in _LOADED:
        return _LOADED[key]
    manifest = read_manifest(model_dir)
    if manifest and manifest.get("prompt_format") != PROMPT_FORMAT:
        raise ValueError(f"{model_dir}: prompt format {manifest.get('prompt_format')} is not {PROMPT_FORMAT}")
    tokenizer = TrendTokenizer(manifest.get("tokenizer", {}).get("words"))
    model = load_causal_lm(model_dir, adapter, merge=True)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(f"{model_dir}: vocabulary of {model.config.vocab_size} words, the prompt needs "
                         f"{len(tokenizer)}")  # fmt: skip
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 0)
    if positions and positions < PROMPT_LENGTH + HORIZON + 1:
        raise ValueError(f"{model_dir}: {positions} positions, the prompt needs {PROMPT_LENGTH + HORIZON + 1}")
    source = str(model_dir) + (f" + {adapter}" if adapter is not None else "")
    model.eval()
    llm = EdgeLLM(model, tokenizer, manifest, source)
    _LOADED[key] = llm
    log.info("trend_llm_loaded", source=source, parameters=sum(p.numel() for p in model.parameters()))
    return llm


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return {}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return manifest


# --- the forecaster --------------------------------------------------------------------------


class EdgeLLMForecaster:
    """``edge_llm`` in ``FORECASTERS``: the edge LLM, with a simple forecaster as the safety net.

    ``fit`` learns nothing (the model is trained offline by ``netgptd trend
    train`` on training parts only). ``predict_many`` forecasts several series
    in one batch (e.g. the top applications of a window); ``stats`` counts
    ``forecasts`` asked for; model outputs (one per ``HORIZON`` steps) that
    were ``ok``, ``repaired`` or ``rejected``; and forecasts answered by the
    ``fallback`` forecaster (rejected, or a history too short or not finite).
    """

    def __init__(self, season: int, model_dir: Path | str | None = None, adapter_dir: Path | str | None = None,
                 fallback: str = "last_value", decoding: str = "median", constrained: bool = True,
                 context: PromptContext | None = None, llm: EdgeLLM | None = None) -> None:  # fmt: skip
        from netgptd.trend.forecasters import FORECASTERS

        if decoding not in ("median", "greedy"):
            raise ValueError(f"decoding {decoding!r}: use median or greedy")
        if fallback not in FORECASTERS or fallback == "edge_llm":
            raise ValueError(f"fallback {fallback!r}: use one of the simple forecasters")
        self.season = season
        self.llm = llm or load_edge_llm(model_dir or os.environ.get(MODEL_ENV),
                                        adapter_dir or os.environ.get(ADAPTER_ENV))  # fmt: skip
        self.fallback_name = fallback
        self.fallback = FORECASTERS[fallback](season)
        self.decoding, self.constrained, self.context = decoding, constrained, context
        self.stats: Counter[str] = Counter()

    def fit(self, history: np.ndarray) -> None:
        self.fallback.fit(history)

    def predict(self, history: np.ndarray, horizon: int, context: PromptContext | None = None) -> np.ndarray:
        return self.predict_many([history], horizon, [context] if context else None)[0]

    def predict_many(self, histories: Sequence[np.ndarray], horizon: int,
                     contexts: Sequence[PromptContext | None] | None = None) -> list[np.ndarray]:  # fmt: skip
        """One forecast of ``horizon`` steps per history, in one batch per chunk of ``HORIZON`` steps."""
        contexts = list(contexts) if contexts else [self.context] * len(histories)
        results: list[np.ndarray | None] = [None] * len(histories)
        live = []
        for i, history in enumerate(histories):
            history = np.asarray(history, dtype=np.float64)
            self.stats["forecasts"] += 1
            usable = len(history) >= MIN_HISTORY and np.all(np.isfinite(history))
            if usable and not all(np.isfinite(window_units(history))):
                usable = False  # values near the float limit: no scale to write them in
            if usable:
                live.append(i)
            else:
                results[i] = self._fallback(history, horizon)
        extended = {i: np.asarray(histories[i], dtype=np.float64) for i in live}
        done = 0
        while live and done < horizon:
            steps = min(HORIZON, horizon - done)
            prompts = [build_prompt(self.llm.tokenizer, extended[i], self.season, contexts[i]) for i in live]
            texts = self.llm.continuations(np.stack([p.ids for p in prompts]), steps, self.decoding, self.constrained)
            still = []
            for i, prompt, text in zip(live, prompts, texts):
                values = self._read(text, steps, prompt, extended[i])
                if values is None:
                    results[i] = self._fallback(np.asarray(histories[i], dtype=np.float64), horizon)
                else:
                    extended[i] = np.concatenate([extended[i], values])
                    still.append(i)
            live = still
            done += steps
        for i in live:
            results[i] = extended[i][-horizon:]
        return results  # type: ignore[return-value]

    def _read(self, text: str, steps: int, prompt: Prompt, history: np.ndarray) -> np.ndarray | None:
        parsed = parse_forecast(text, steps)
        values = None if parsed.values is None else prompt.center + prompt.scale * parsed.values
        if values is not None and not np.all(np.isfinite(values)):
            parsed = ParsedForecast(None, "rejected", parsed.problems + ["non-finite after scaling"])
            values = None
        self.stats[parsed.status] += 1
        if parsed.status != "ok":
            log.debug("trend_llm_output", status=parsed.status, problems=parsed.problems, text=text)
        if values is None:
            return None
        return np.maximum(values, 0.0) if history.min() >= 0 else values

    def _fallback(self, history: np.ndarray, horizon: int) -> np.ndarray:
        self.stats["fallback"] += 1
        if len(history) == 0:
            return np.zeros(horizon)
        history = np.nan_to_num(history, nan=0.0, posinf=0.0, neginf=0.0)
        return np.asarray(self.fallback.predict(history, horizon), dtype=np.float64)
