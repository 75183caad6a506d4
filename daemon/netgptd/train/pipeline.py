"""``netgptd train``: corpus → split by capture → pretrain → fine-tune → evaluate → bundle."""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import structlog
import torch

from netgptd.model.port_prior import PortPrior
from netgptd.model.tokenizer import TokenizerConfig, vocab_size
from netgptd.train.dataset import FlowExample, app_classes, load_corpus, split
from netgptd.train.evaluate import app_target, evaluate, render
from netgptd.train.export import write_bundle
from netgptd.train.labels import ATTACKS
from netgptd.train.model import ModelShape, NetGPT
from netgptd.train.trainer import TrainSettings, finetune, pretrain, seed_everything

log = structlog.get_logger(__name__)


def attack_classes(examples: Sequence[FlowExample]) -> list[str]:
    """The attack classes the data holds, ``benign`` first."""
    present = {e.label.attack for e in examples}
    return [a for a in ATTACKS if a in present or a == "benign"]


def train_bundle(roots: Sequence[Path], out: Path, settings: TrainSettings, shape: ModelShape,
                 tokenizer: TokenizerConfig, name: str, version: str, quantize: bool = False,
                 max_per_capture: int = 400, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train, evaluate on held-out captures, and write the bundle; returns the evaluation."""
    started = time.monotonic()
    seed_everything(settings.seed, settings.threads)
    corpus = load_corpus(roots, tokenizer, max_per_capture=max_per_capture, seed=settings.seed, progress=progress)
    train, test = split(corpus)
    # An attack class held out whole (a lab scenario in the test part of every
    # run) keeps its output, untrained, so its flows are scored as missed.
    apps, attacks = app_classes(train), attack_classes(corpus.examples)
    log.info("training_data", train_flows=len(train), test_flows=len(test), apps=len(apps), attacks=attacks)
    model = NetGPT(shape, vocab_size(apps), len(apps), len(attacks))
    pretrain_loss = pretrain(model, train, apps, tokenizer, settings, progress)
    # Fine-tuning the backbone for classification wears the LM down (its loss
    # roughly doubles): generation uses the weights as pretraining left them,
    # trained on for ``lm_epochs`` once the classifier is evaluated.
    language_model = copy.deepcopy(model)
    finetune_loss = finetune(model, train, apps, attacks, tokenizer, settings, progress)
    # Serving applies a port prior only to a model that reads the port: fitted for such a model alone.
    port_prior = (PortPrior.fit((((e.proto, e.server_port), e.capture_id, app_target(e, apps)) for e in train), apps)
                  if tokenizer.server_port else None)  # fmt: skip
    evaluation = evaluate(model, train, test, apps, attacks, tokenizer, port_prior, roots=roots, seed=settings.seed)
    lm_settings = replace(settings, pretrain_epochs=settings.lm_epochs)
    lm_loss = pretrain(language_model, train, apps, tokenizer, lm_settings, progress) if settings.lm_epochs else []
    summary = {
        "corpus": [str(r) for r in roots],
        "train_flows": len(train),
        "test_flows": len(test),
        "train_captures": len({e.capture_id for e in train}),
        "left_out": dict(corpus.left_out),
        "settings": asdict(settings),
        "pretrain_loss": pretrain_loss,
        "finetune_loss": finetune_loss,
        "lm_loss": lm_loss,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {settings.threads} threads",
    }
    write_bundle(out, model, apps, attacks, tokenizer, shape, summary, evaluation, name, version, quantized=quantize,
                 lm_model=language_model, port_prior=port_prior)  # fmt: skip
    (out / "EVALUATION.txt").write_text(render(evaluation) + "\n", encoding="utf-8")
    return evaluation
