"""Training the edge LLM that reads window summaries (a tiny GPT-2 from scratch, our own vocabulary).

``python -m netgptd.intent.train [--out DIR] [--seconds S]`` rebuilds the
shipped model in ``default_llm/``. Nothing is downloaded: GPT2Config +
random init. It learns two tasks from generated examples; netgptd runs the
observed one (windows to intents); operator sentences go to the pretrained
encoder (:mod:`nlu`), which generalises to wording these templates lack.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Iterable

import structlog

from .data import operator_example, operator_tokens, random_window_and_alerts, split_templates, teacher
from .engine import DEFAULT_MODEL, VOCAB_FILE
from .lang import MAX_PROMPT, N_UNK, Vocab, encode_prompt, output_tokens
from .observe import summarize

log = structlog.get_logger(__name__)

MODEL_SHAPE = {"n_embd": 128, "n_layer": 4, "n_head": 4, "n_positions": 256}


def noisy(prompt: list[str], rng: random.Random, p_swap: float = 0.06, p_insert: float = 0.3) -> list[str]:
    """Word noise: words swapped for, and a few inserted as, random unknown buckets (each time a different one).

    Buckets so mean "some word the model does not know", never a particular word, and unseen
    carrier words in new phrasings are ignored rather than read as a slot."""
    out = [f"<unk{rng.randrange(N_UNK)}>" if not w.startswith("<") and rng.random() < p_swap else w for w in prompt]
    if rng.random() < p_insert:
        for _ in range(rng.randint(1, 3)):
            out.insert(rng.randint(0, len(out)), f"<unk{rng.randrange(N_UNK)}>")
    return out[:MAX_PROMPT]


def operator_pairs(n: int, seed: int, noise: bool = False) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    split = split_templates()["train"]
    out = []
    while len(out) < n:
        try:
            prompt, output = operator_tokens(operator_example(rng, split["frames"], split["joins"]))
        except ValueError:  # a pointer overflowed (more than 8 places in one sentence): skip
            continue
        out.append((noisy(prompt, rng) if noise else prompt, output))
    return out


def observed_pairs(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        window, alerts = random_window_and_alerts(rng)
        prompt, feats, _ = summarize(window, alerts)
        out.append((prompt, output_tokens(teacher(feats))))
    return out


def encode(vocab: Vocab, task: str, prompt: list[str], output: list[str]) -> tuple[list[int], int]:
    ids = encode_prompt(vocab, task, prompt)
    return ids + [vocab.id(t) for t in output], len(ids)


def _batches(examples: list[tuple[list[int], int]], batch: int, rng: random.Random, dropout_map: Any, p_drop: float):
    import torch

    while True:
        chunk = rng.sample(examples, batch)
        width = max(len(ids) for ids, _ in chunk)
        x = torch.zeros((batch, width), dtype=torch.long)
        y = torch.full((batch, width), -100, dtype=torch.long)
        m = torch.zeros((batch, width), dtype=torch.long)
        for i, (ids, n_prompt) in enumerate(chunk):
            t = torch.tensor(ids)
            if p_drop and dropout_map is not None:
                drop = (torch.rand(n_prompt) < p_drop) & (dropout_map[t[:n_prompt]] >= 0)
                t[:n_prompt] = torch.where(drop, dropout_map[t[:n_prompt]], t[:n_prompt])
            x[i, : len(ids)] = t
            y[i, n_prompt : len(ids)] = t[n_prompt:]
            m[i, : len(ids)] = 1
        yield x, y, m


def train_loop(model: Any, examples: list[tuple[list[int], int]], steps: int, lr: float, batch: int = 48,
               seconds: float | None = None, seed: int = 0, dropout_map: Any = None, p_drop: float = 0.0,
               params: Iterable[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(list(params if params is not None else model.parameters()), lr=lr, weight_decay=0.01)
    warm = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    t0 = time.monotonic()
    losses: list[float] = []
    step = 0
    for step, (x, y, m) in enumerate(_batches(examples, min(batch, len(examples)), rng, dropout_map, p_drop), 1):
        dev = next(model.parameters()).device
        loss = model(input_ids=x.to(dev), attention_mask=m.to(dev), labels=y.to(dev)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.detach())
        if step % 100 == 0:
            losses = [float(v) for v in losses]
            log.info("intent.train", step=step, loss=round(sum(losses[-100:]) / len(losses[-100:]), 4),
                     seconds=round(time.monotonic() - t0))  # fmt: skip
        if step >= steps or (seconds and time.monotonic() - t0 > seconds):
            break
    model.eval()
    losses = [float(v) for v in losses]
    return {"steps": step, "seconds": round(time.monotonic() - t0, 1), "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4)}


def train_default(out: Path = DEFAULT_MODEL, steps: int = 3000, seconds: float = 480, seed: int = 7,
                  n_op: int = 40000, n_obs: int = 12000, batch: int = 48, lr: float = 2e-3,
                  device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    t0 = time.monotonic()
    op = operator_pairs(n_op, seed, noise=True)
    obs = observed_pairs(n_obs, seed + 1)
    words = {w for prompt, _ in op for w in prompt if not w.startswith("<")}
    vocab = Vocab(words)
    examples = [encode(vocab, "op", p, o) for p, o in op] + [encode(vocab, "obs", p, o) for p, o in obs]
    gen_s = time.monotonic() - t0
    config = GPT2Config(vocab_size=len(vocab), bos_token_id=vocab.id("<op>"), eos_token_id=vocab.id("<eos>"),
                        pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **MODEL_SHAPE)  # fmt: skip
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).to(device)
    stats = train_loop(model, examples, steps, lr, batch=batch, seconds=seconds, seed=seed)
    model = model.to("cpu")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    vocab.save(out / VOCAB_FILE)
    info = {"examples": {"operator": len(op), "observed": len(obs)}, "vocab": len(vocab), "generate_s": round(gen_s, 1),
            "params": sum(p.numel() for p in model.parameters()), "shape": MODEL_SHAPE, "device": device,
            "batch": batch, "lr": lr, **stats}  # fmt: skip
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=480)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-op", type=int, default=40000)
    parser.add_argument("--n-obs", type=int, default=12000)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = train_default(args.out, args.steps, args.seconds, n_op=args.n_op, n_obs=args.n_obs, batch=args.batch, lr=args.lr, device=args.device)
    print(json.dumps(info))
    (args.out / "TRAINING.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
