"""Pretraining (causal LM over traffic) and fine-tuning (application and attack heads)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from netgptd.model.tokenizer import CLS, EOS, FIRST_APP_TOKEN, GEN, TokenizerConfig, encode_flow, pad_batch
from netgptd.train.dataset import FlowExample
from netgptd.train.model import NetGPT


@dataclass(frozen=True)
class TrainSettings:
    pretrain_epochs: int = 2
    finetune_epochs: int = 6
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    shuffle_probability: float = 0.2
    segment_probability: float = 0.2
    port_dropout: float = 0.3
    threads: int = 2
    # Further causal-LM epochs for the generation LM alone, after the classifier is done:
    # fine-tuning wants the backbone early, generation wants the bytes modelled well.
    lm_epochs: int = 10


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def _tensors(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    padded, lengths = pad_batch(rows)
    ids = torch.tensor(padded, dtype=torch.long)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def generation_tokens(example: FlowExample, apps: Sequence[str], config: TokenizerConfig,
                      rng: random.Random | None = None) -> list[int]:  # fmt: skip
    """``[GEN] [APP=x] [PORT] ... [EOS]``: what the LM learns and generation samples."""
    app = example.label.app if example.label.app in apps else "unknown"
    prompt = (GEN, FIRST_APP_TOKEN + apps.index(app))
    tokens = encode_flow(example.packets, example.server_port, config, prompt=prompt, rng=rng, segment_probability=0.2 if rng else 0.0)
    return tokens[: config.max_tokens - 1] + [EOS]


def _batches(count: int, size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(count))
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, count, size)]


def _optimizer(model: nn.Module, lr: float, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _run_epochs(model: NetGPT, count: int, epochs: int, settings: TrainSettings, rng: random.Random, name: str,
                batch_loss: Callable[[list[int]], torch.Tensor], progress: bool) -> list[float]:  # fmt: skip
    """The loop both stages share: shuffled batches of example indices, AdamW
    with warm-up and cosine decay, clipped gradients; mean loss per epoch."""
    optimizer, scheduler = _optimizer(model, settings.lr, epochs * math.ceil(count / settings.batch))
    losses = []
    model.train()
    for epoch in range(epochs):
        total = n = 0.0
        bar = tqdm(_batches(count, settings.batch, rng), desc=f"{name} {epoch + 1}/{epochs}", disable=not progress)
        for batch in bar:
            loss = batch_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix(loss=f"{total / n:.3f}")
        losses.append(total / max(n, 1))
    return losses


def pretrain(model: NetGPT, examples: Sequence[FlowExample], apps: Sequence[str], config: TokenizerConfig,
             settings: TrainSettings, progress: bool = True) -> list[float]:  # fmt: skip
    """Causal LM over the flows' token sequences; returns the loss per epoch."""
    rng = random.Random(settings.seed)

    def batch_loss(batch: list[int]) -> torch.Tensor:
        ids, mask = _tensors([generation_tokens(examples[i], apps, config, rng) for i in batch])
        return model.lm_loss(ids, mask)

    return _run_epochs(model, len(examples), settings.pretrain_epochs, settings, rng, "pretrain", batch_loss, progress)


def class_weights(indices: Sequence[int], classes: int) -> torch.Tensor:
    """Inverse square-root frequency: rare classes count more, without taking over."""
    counts = torch.bincount(torch.tensor(indices), minlength=classes).float().clamp(min=1)
    weights = counts.rsqrt()
    return weights / weights.mean()


def finetune(model: NetGPT, examples: Sequence[FlowExample], apps: Sequence[str], attacks: Sequence[str],
             config: TokenizerConfig, settings: TrainSettings, progress: bool = True) -> list[float]:  # fmt: skip
    """Both classification heads (and the backbone) on labelled flows; loss per epoch."""
    rng = random.Random(settings.seed + 1)
    app_index = [apps.index(e.label.app) if e.label.app in apps else apps.index("unknown") for e in examples]
    attack_index = [attacks.index(e.label.attack) for e in examples]
    # The app head learns the flows' own class frequencies: weighting rare apps up
    # made it call nDPI's many `unknown` flows TLS, QUIC or DNS (macro-F1 on
    # held-out training captures 0.62-0.66 weighted, 0.71-0.76 not, over 3 seeds).
    # Rare attacks keep their weight: a missed miner costs more than a flow.
    app_loss = nn.CrossEntropyLoss()
    attack_loss = nn.CrossEntropyLoss(weight=class_weights(attack_index, len(attacks)))

    def batch_loss(batch: list[int]) -> torch.Tensor:
        rows = [
            encode_flow(examples[i].packets, examples[i].server_port, config, prompt=(CLS,), rng=rng,
                        shuffle_probability=settings.shuffle_probability,
                        segment_probability=settings.segment_probability, port_dropout=settings.port_dropout)
            for i in batch
        ]  # fmt: skip
        app_logits, attack_logits = model.classify(*_tensors(rows))
        return app_loss(app_logits, torch.tensor([app_index[i] for i in batch])) + attack_loss(
            attack_logits, torch.tensor([attack_index[i] for i in batch])
        )

    return _run_epochs(model, len(examples), settings.finetune_epochs, settings, rng, "finetune", batch_loss, progress)


@torch.no_grad()
def predict(model: NetGPT, examples: Sequence[FlowExample], config: TokenizerConfig,
            batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Softmax probabilities of both heads for each example (no augmentation)."""
    model.eval()
    apps, attacks = [], []
    for start in range(0, len(examples), batch):
        rows = [encode_flow(e.packets, e.server_port, config) for e in examples[start : start + batch]]
        ids, mask = _tensors(rows)
        a, b = model.classify(ids, mask)
        apps.append(a.softmax(-1))
        attacks.append(b.softmax(-1))
    return torch.cat(apps), torch.cat(attacks)
