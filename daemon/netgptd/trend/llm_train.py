"""Training the edge LLM forecaster: from scratch on series, or LoRA on a site's own window history.

Examples are sliding windows: a forecast origin ``t`` of a series gives the
prompt built from ``values[:t]`` (``llm.build_prompt``) followed by the next
``HORIZON`` values in the same window units and ``<eos>``. Only the training
part of a CSV series is ever read (its first ``train_fraction``, as ``trend
eval`` splits; 1: all of it), and the last ``val_fraction`` of that part is
kept out of training to score the model (rMAE against seasonal naive, as
``trend eval`` does) for the manifest. *Holdout* series are never trained on:
they are scored whole from ``HOLDOUT_FROM`` on, as unseen series, which is how
the shipped model is judged (trained on other series than those it is scored
on). The manifest lists every file read, with its use and SHA-256. Synthetic
seasonal, bursty series can be mixed in.

The loss is cross-entropy on the continuation with *ordinal* label
smoothing: part of each number's target mass is spread over the number
tokens near it (a Gaussian over their order), so the model learns that 1.2 is
nearly right where 1.3 was seen; it learns the numbers' order from far fewer
examples than plain one-hot targets need.

Seeds are fixed (NumPy and torch); the same inputs and settings give the same
weights on the same machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import structlog

from netgptd.model.bundle import sha256_file
from netgptd.trend import llm as L
from netgptd.trend.evaluate import mae
from netgptd.trend.forecasters import seasonal_naive_forecast
from netgptd.trend.history import HISTORY_FILE, WindowHistory
from netgptd.trend.series import detect_season, load_series

log = structlog.get_logger(__name__)

MIN_ORIGIN = 16  # the first forecast origin of a series (shorter prompts are padded with ?)


@dataclass
class TrainSeries:
    name: str
    values: np.ndarray
    season: int
    times: np.ndarray | None = None  # seconds since the epoch of each value
    site: str | None = None
    location: str | None = None
    synthetic: bool = False
    holdout: bool = False  # scored for the manifest only, never trained on
    path: str | None = None  # the file it was read from
    file_sha256: str | None = None


@dataclass
class TrainConfig:
    epochs: int = 1
    examples: int = 48_000  # per epoch
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps
    smoothing: float = 0.5  # share of each number's target mass spread over its neighbours
    smoothing_width: float = 3.0  # in number tokens (0.1 window units near 0)
    synthetic: int = 128  # synthetic series in the pool (0: none)
    synthetic_points: int = 4032
    synthetic_share: float = 0.5  # of the examples
    val_fraction: float = 0.1
    time_dropout: float = 0.5  # examples written without local time (trend eval never has it)
    season_dropout: float = 0.1  # examples written with season 1 (no lag values)
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    dropout: float = 0.05
    lora_rank: int = 8
    lora_alpha: int = 16
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"  # torch device for training (the model is always saved and scored on the CPU)
    max_minutes: float | None = 20.0  # stop the loop early (then not reproducible step for step); None: never
    timezone: str | None = None  # for the local time of series with timestamps (default UTC)


# --- training series -------------------------------------------------------------------------


def series_from_csvs(paths: Sequence[Path], train_fraction: float = 0.7, holdout: bool = False) -> list[TrainSeries]:
    """The training parts (first ``train_fraction``; 1: all) of ``timestamp,value`` CSV series.

    ``holdout``: whole series, kept out of training and scored as unseen (``validate``).
    """
    out = []
    for path in paths:
        series = load_series(Path(path))
        split = len(series.values) if holdout else int(len(series.values) * train_fraction)
        values = series.values[:split]
        out.append(TrainSeries(series.name, values, detect_season(values), series.timestamps[:split],
                               holdout=holdout, path=str(path), file_sha256=sha256_file(Path(path))))  # fmt: skip
    return out


def history_pairs(state_dir: Path) -> list[tuple[str, str]]:
    """The (site, sensor) pairs a window history holds."""
    path = Path(state_dir) / HISTORY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no window history there")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [tuple(row) for row in db.execute("SELECT DISTINCT site, sensor FROM windows ORDER BY 1, 2")]


def series_from_history(state_dir: Path, metrics: Sequence[str] = ("bytes", "flows"), top_apps: int = 5,
                        location: str | None = None, min_points: int = 64) -> list[TrainSeries]:  # fmt: skip
    """A site's own series from its window history: totals and its top applications' bytes.

    The season is detected among an hour, two hours and a day at the
    history's window width.
    """
    out = []
    with WindowHistory(Path(state_dir)) as history:
        for site, sensor in history_pairs(state_dir):
            windows = history.windows(site, sensor)
            if len(windows) < min_points:
                log.warning("trend_train_history_short", site=site, sensor=sensor, windows=len(windows))
                continue
            width = windows[0].width
            periods = tuple(sorted({max(2, round(s / width)) for s in (3600, 7200, 86400)}))
            totals: dict[str, int] = {}
            for w in windows:
                for name, traffic in w.apps.items():
                    totals[name] = totals.get(name, 0) + traffic.bytes
            apps = sorted(totals, key=lambda n: (-totals[n], n))[:top_apps]
            keys = [(m, None) for m in metrics] + [("bytes", f"app:{a}") for a in apps]
            times = np.array([w.start + w.width for w in windows])
            for metric, key in keys:
                values = np.array([w.value(metric, key) for w in windows], dtype=np.float64)
                name = f"{site}/{sensor}/{metric}" + (f"/{key}" if key else "")
                out.append(TrainSeries(name, values, detect_season(values, periods), times, site, location))
    return out


def synthetic_series(count: int, points: int, seed: int) -> list[TrainSeries]:
    """Seasonal, noisy, bursty series at 5-minute steps: levels 0.3 to 30 000, counts or not."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        t = np.arange(points)
        period = int(rng.choice([288, 288, 288, 12, 0]))
        profile = np.zeros(points)
        if period:
            for k in range(1, int(rng.integers(1, 4)) + 1):
                profile += rng.uniform(0, 0.8 / k) * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
        walk = np.cumsum(rng.normal(0, rng.uniform(0, 0.02), points))
        shifts = np.zeros(points)
        for _ in range(int(rng.poisson(1.0))):
            shifts[int(rng.integers(points)):] += rng.normal(0, 0.5)
        level = 10 ** rng.uniform(-0.5, 4.5)
        mean = level * np.exp(profile + walk - walk.mean() + shifts)
        bursts = np.zeros(points)
        for start in rng.integers(0, points, int(rng.poisson(points / rng.uniform(200, 2000)))):
            size = rng.lognormal(0.5, 1.0)
            decay = np.exp(-np.arange(points - start) / rng.uniform(0.5, 20))
            bursts[start:] += size * decay
        mean = mean * (1 + bursts)
        kind = rng.choice(["poisson", "lognormal", "gaussian"])
        if kind == "poisson" and level < 3000:
            values = rng.poisson(mean).astype(np.float64)
        elif kind == "lognormal":
            values = mean * rng.lognormal(0, rng.uniform(0.05, 0.6), points)
        else:
            values = np.maximum(mean + rng.normal(0, rng.uniform(0.02, 0.3) * level, points), 0)
        if rng.random() < 0.15:  # outages: runs of zeros
            for start in rng.integers(0, points, int(rng.integers(1, 4))):
                values[start:start + int(rng.integers(3, 60))] = 0
        out.append(TrainSeries(f"synthetic-{i}", values, detect_season(values), synthetic=True))
    return out


# --- examples --------------------------------------------------------------------------------


class ExampleMaker:
    """Token rows (prompt + ``HORIZON`` numbers + ``<eos>``) for forecast origins of the series."""

    def __init__(self, tok: L.TrendTokenizer, config: TrainConfig, with_time: bool = True) -> None:
        self.tok, self.config, self.with_time = tok, config, with_time
        self.zone: Any = timezone.utc
        if config.timezone:
            from zoneinfo import ZoneInfo

            self.zone = ZoneInfo(config.timezone)

    def context(self, series: TrainSeries, t: int, rng: np.random.Generator | None) -> L.PromptContext:
        """Site, location and local time of the origin; time dropped at random (rng) or when not ``with_time``."""
        if series.times is None:
            return L.PromptContext(series.site, series.location, None)
        timed = self.with_time if rng is None else rng.random() >= self.config.time_dropout
        when = datetime.fromtimestamp(float(series.times[t - 1]), self.zone) if timed else None
        return L.PromptContext(series.site, series.location, when)

    def row(self, series: TrainSeries, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
        season = series.season
        if rng is not None and rng.random() < self.config.season_dropout:
            season = 1
        keep = L.CONTEXT + L.LAG_BEFORE + season * (1 + L.HORIZON // max(season, 1)) + 1
        history = series.values[max(0, t - keep):t]
        prompt = L.build_prompt(self.tok, history, season, self.context(series, t, rng))
        target = (series.values[t:t + L.HORIZON] - prompt.center) / prompt.scale
        return np.concatenate([prompt.ids, self.tok.number_tokens(target), [self.tok.eos]])


HOLDOUT_FROM = 0.7  # a held-out series is scored from here on, as ``trend eval`` splits


def splits(series: TrainSeries, val_fraction: float) -> tuple[range, range]:
    """Training origins (targets end before the validation part) and validation origins (every HORIZON).

    A held-out series has no training origins; its validation origins are those ``trend eval`` scores.
    """
    n = len(series.values)
    if series.holdout:
        return range(0), range(max(int(n * HOLDOUT_FROM), MIN_ORIGIN), n - L.HORIZON + 1, L.HORIZON)
    val_start = n if series.synthetic or val_fraction <= 0 else int(n * (1 - val_fraction))
    train = range(MIN_ORIGIN, val_start - L.HORIZON + 1)
    val = range(max(val_start, MIN_ORIGIN), n - L.HORIZON + 1, L.HORIZON) if val_start < n else range(0)
    return train, val


def sample_origins(series: list[TrainSeries], config: TrainConfig, rng: np.random.Generator,
                   count: int) -> list[tuple[int, int]]:  # fmt: skip
    """``count`` (series index, origin) pairs: real series equally often, synthetic ones ``synthetic_share``."""
    real = [i for i, s in enumerate(series) if not s.synthetic and len(splits(s, config.val_fraction)[0])]
    fake = [i for i, s in enumerate(series) if s.synthetic and len(splits(s, config.val_fraction)[0])]
    share = config.synthetic_share if real and fake else (1.0 if fake else 0.0)
    picks = []
    for _ in range(count):
        pool = fake if rng.random() < share else real
        i = pool[int(rng.integers(len(pool)))]
        origins = splits(series[i], config.val_fraction)[0]
        picks.append((i, origins[int(rng.integers(len(origins)))]))
    return picks


# --- model -----------------------------------------------------------------------------------


def new_model(tok: L.TrendTokenizer, config: TrainConfig) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    positions = 8 * math.ceil((L.PROMPT_LENGTH + L.HORIZON + 1) / 8)
    gpt = GPT2Config(vocab_size=len(tok), n_positions=positions, n_embd=config.n_embd, n_layer=config.n_layer,
                     n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
                     attn_pdrop=config.dropout, bos_token_id=tok.bos, eos_token_id=tok.eos,
                     pad_token_id=tok.pad)  # fmt: skip
    return GPT2LMHeadModel(gpt)


def smoothing_matrix(tok: L.TrendTokenizer, config: TrainConfig) -> np.ndarray:
    """Row r: the target distribution over number tokens (in value order) for the r-th number."""
    n = len(tok.number_ids)
    ranks = np.arange(n)
    kernel = np.exp(-0.5 * ((ranks[None, :] - ranks[:, None]) / max(config.smoothing_width, 1e-6)) ** 2)
    kernel /= kernel.sum(axis=1, keepdims=True)
    return (1 - config.smoothing) * np.eye(n) + config.smoothing * kernel


# --- scoring ---------------------------------------------------------------------------------


def validate(llm: L.EdgeLLM, series: list[TrainSeries], config: TrainConfig, batch: int = 64,
             with_time: bool = False, decoding: str = "median") -> dict:  # fmt: skip
    """rMAE (vs seasonal naive) of the model and of last value on each series' validation origins.

    Without local time in the prompts by default, as ``trend eval`` forecasts.
    """
    report: dict[str, Any] = {}
    maker = ExampleMaker(llm.tokenizer, config, with_time)
    for s in series:
        origins = list(splits(s, config.val_fraction)[1])
        if not origins:
            continue
        forecaster = L.EdgeLLMForecaster(s.season, llm=llm, decoding=decoding)
        forecasts = []
        for start in range(0, len(origins), batch):
            chunk = origins[start:start + batch]
            forecasts += forecaster.predict_many([s.values[:t] for t in chunk], L.HORIZON,
                                                 [maker.context(s, t, None) for t in chunk])  # fmt: skip
        actual = np.stack([s.values[t:t + L.HORIZON] for t in origins])
        reference = np.stack([seasonal_naive_forecast(s.values[:t], L.HORIZON, s.season) for t in origins])
        last = np.stack([np.full(L.HORIZON, s.values[t - 1]) for t in origins])
        denominator = mae(actual, reference)
        if denominator > 0:
            report[s.name] = {"origins": len(origins), "edge_llm": mae(actual, np.stack(forecasts)) / denominator,
                              "last_value": mae(actual, last) / denominator,
                              "outputs": dict(forecaster.stats)}  # fmt: skip
    scored = list(report.values())
    if scored:
        report["mean"] = {name: float(np.mean([r[name] for r in scored])) for name in ("edge_llm", "last_value")}
    return report


# --- training --------------------------------------------------------------------------------


def train(series: list[TrainSeries], out: Path, config: TrainConfig, base: Path | None = None,
          lora: bool = False, progress: bool | None = None,
          on_step: Callable[[int, float], None] | None = None) -> dict:  # fmt: skip
    """Train, write the model (or adapter) folder ``out`` with its manifest; returns the manifest.

    ``base``: start from that model directory (default for ``lora``: the
    shipped model); ``lora``: train a LoRA adapter on it instead of all weights.
    """
    import torch

    started = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if lora and base is None:
        base = L.DEFAULT_MODEL_DIR
    if base is not None:
        from transformers import AutoModelForCausalLM

        base_manifest = L.read_manifest(base)
        tok = L.TrendTokenizer(base_manifest.get("tokenizer", {}).get("words"))
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    else:
        base_manifest, tok = {}, L.TrendTokenizer()
        model = new_model(tok, config)
    base_validation = {}
    if base is not None and any(len(splits(s, config.val_fraction)[1]) for s in series):  # what training has to beat
        base_validation = validate(L.EdgeLLM(model.eval(), tok, base_manifest, str(base)), series, config)
    if lora:
        from peft import LoraConfig, get_peft_model

        gpt2 = model.config.model_type == "gpt2"
        model = get_peft_model(model, LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, fan_in_fan_out=gpt2,
            target_modules=["c_attn", "c_proj", "c_fc"] if gpt2 else "all-linear"))  # fmt: skip
    if not any(len(splits(s, config.val_fraction)[0]) for s in series):
        raise ValueError(f"no series long enough to train on (each needs {MIN_ORIGIN + L.HORIZON + 1} points "
                         f"before its validation part)")  # fmt: skip

    pool = list(series)
    if config.synthetic and not lora:
        pool += synthetic_series(config.synthetic, config.synthetic_points, config.seed + 1)
    device = torch.device(config.device)
    model.to(device)
    maker = ExampleMaker(tok, config)
    steps = max(1, config.epochs * config.examples // config.batch)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    warmup = max(1, int(config.warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.1 + 0.9 * 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))))  # fmt: skip
    smooth = torch.from_numpy(smoothing_matrix(tok, config)).float().to(device)
    rank_of = torch.full((len(tok),), -1, dtype=torch.long)
    rank_of[torch.from_numpy(tok.number_ids)] = torch.arange(len(tok.number_ids))
    rank_of = rank_of.to(device)
    number_ids = torch.from_numpy(tok.number_ids).to(device)
    keep = L.HORIZON + 1

    from tqdm import tqdm

    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="trend train" + (" (lora)" if lora else ""), unit="step",
               disable=not sys.stderr.isatty() if progress is None else not progress)  # fmt: skip
    done = 0
    for step in bar:
        picks = sample_origins(pool, config, rng, config.batch)
        rows = torch.from_numpy(np.stack([maker.row(pool[i], t, rng) for i, t in picks])).to(device)
        logits = model(input_ids=rows[:, :-1], logits_to_keep=keep).logits.float()
        targets = rows[:, -keep:]
        logp = torch.log_softmax(logits, dim=-1)
        ranks = rank_of[targets[:, :-1]]
        number_loss = -(smooth[ranks] * logp[:, :-1, :][..., number_ids]).sum(-1)
        eos_loss = -logp[:, -1, tok.eos]
        loss = (number_loss.sum(-1) + eos_loss).mean() / keep
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if on_step:
            on_step(step, losses[-1])
        if config.max_minutes and time.monotonic() - started > 60 * config.max_minutes:
            log.warning("trend_train_time_budget", steps_done=done, steps=steps)
            break
    bar.close()
    train_seconds = time.monotonic() - started

    model.eval()
    model.to("cpu")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    if lora:
        weights = out / "adapter_model.safetensors"
        (out / "README.md").unlink(missing_ok=True)  # peft's model-card template
        merged = model.merge_and_unload()  # after saving: merging folds the adapter into the base
    else:
        weights = out / "model.safetensors"
        (out / "generation_config.json").unlink(missing_ok=True)
        merged = model
    scored = any(len(splits(s, config.val_fraction)[1]) for s in series)
    validation = validate(L.EdgeLLM(merged, tok, {}, "training"), series, config) if scored else {}
    manifest = {
        "format": L.MANIFEST_FORMAT,
        "kind": "lora-adapter" if lora else "model",
        "prompt_format": L.PROMPT_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prompt": {"horizon": L.HORIZON, "context": L.CONTEXT, "lag_before": L.LAG_BEFORE,
                   "name_chars": L.NAME_CHARS, "length": L.PROMPT_LENGTH},
        "scaling": {"scheme": "window units: (value - center) / scale per prompt",
                    "center": f"median of the last {L.CENTER_POINTS} values",
                    "scale": f"1.4826 * MAD of the last {L.CONTEXT} values, else their mean absolute "
                             "deviation, else 1% of |center|, else 1",
                    "numbers": "one decimal below 10, integers to 99, clipped beyond"},
        "tokenizer": {"kind": "word-level, character-level site and location", "words": tok.words},
        "model": {"architecture": type(merged).__name__, "parameters": sum(p.numel() for p in merged.parameters()),
                  **({"n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head}
                     if base is None else {})},
        "base": None if base is None else {"path": str(base),
                                           "weights_sha256": base_manifest.get("weights_sha256")},
        "training": {
            "config": asdict(config),
            "files": [{"path": s.path, "sha256": s.file_sha256, "use": "holdout" if s.holdout else "train"}
                      for s in series if s.path],
            "series": [{"name": s.name, "points": len(s.values), "season": s.season, "holdout": s.holdout,
                        "values_sha256": hashlib.sha256(np.ascontiguousarray(s.values, "<f8").tobytes()).hexdigest(),
                        "training_origins": len(splits(s, config.val_fraction)[0]),
                        "validation_origins": len(splits(s, config.val_fraction)[1])}
                       for s in series],
            "synthetic_series": sum(s.synthetic for s in pool),
            "steps": done, "planned_steps": steps, "examples": done * config.batch,
            "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
            "train_seconds": round(train_seconds, 1),
        },
        "validation_rmae": validation,
        "base_validation_rmae": base_validation or None,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
    }  # fmt: skip
    if lora:
        manifest["tokenizer"] = {"inherited_from": str(base)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("trend_train_done", out=str(out), steps=done, seconds=round(time.monotonic() - started, 1),
             validation=validation.get("mean"))  # fmt: skip
    return manifest
