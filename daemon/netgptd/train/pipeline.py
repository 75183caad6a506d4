"""``netgptd train``: corpus → split by capture → pretrain → fine-tune → evaluate → bundle."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import structlog
import torch

from netgptd.model.tokenizer import TokenizerConfig
from netgptd.train.dataset import Corpus, app_classes, attack_classes, load_corpus, split
from netgptd.train.evaluate import evaluate, render
from netgptd.train.export import write_bundle
from netgptd.train.fit import VALIDATION_SHARE, fit
from netgptd.train.loso import leave_one_source_out
from netgptd.train.loso_report import render_loso
from netgptd.train.model import ModelShape
from netgptd.train.trainer import TrainSettings, pretrain, seed_everything

log = structlog.get_logger(__name__)

def train_bundle(roots: Sequence[Path], out: Path, settings: TrainSettings, shape: ModelShape,
                 tokenizer: TokenizerConfig, name: str, version: str, quantize: bool = False,
                 max_per_capture: int = 400, progress: bool = True, loso: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train, evaluate on held-out captures (and, with ``loso``, leave each
    source out in turn), and write the bundle; returns the evaluation."""
    started = time.monotonic()
    seed_everything(settings.seed, settings.threads)
    corpus = load_corpus(roots, tokenizer, max_per_capture=max_per_capture, seed=settings.seed, progress=progress)
    learn, test = split(corpus)
    train, validation = split(Corpus(examples=learn), VALIDATION_SHARE)
    # An attack class held out whole (a lab scenario in the test part of every
    # run) keeps its output, untrained, so its flows are scored as missed.
    apps, attacks = app_classes(train), attack_classes(corpus.examples)
    log.info("training_data", train_flows=len(train), validation_flows=len(validation), test_flows=len(test),
             apps=len(apps), attacks=attacks)  # fmt: skip
    # Fine-tuning the backbone for classification wears the LM down (its loss
    # roughly doubles): generation uses the weights as pretraining left them,
    # trained on for ``lm_epochs`` once the classifier is evaluated.
    fitted = fit(train, validation, apps, attacks, tokenizer, shape, settings, progress, keep_pretrained=True)
    evaluation = evaluate(fitted.model, train, test, apps, attacks, tokenizer, fitted.port_prior, roots=roots,
                          seed=settings.seed, thresholds=fitted.thresholds)  # fmt: skip
    if loso:
        evaluation["loso"] = leave_one_source_out(corpus.examples, tokenizer, shape, settings, progress)
    language_model = fitted.pretrained
    assert language_model is not None
    lm_settings = replace(settings, pretrain_epochs=settings.lm_epochs)
    lm_loss = pretrain(language_model, train, apps, tokenizer, lm_settings, progress) if settings.lm_epochs else []
    summary = {
        "corpus": [str(r) for r in roots],
        "train_flows": len(train),
        "validation_flows": len(validation),
        "test_flows": len(test),
        "train_captures": len({e.capture_id for e in train}),
        "left_out": dict(corpus.left_out),
        "settings": asdict(settings),
        "pretrain_loss": fitted.losses["pretrain"],
        "finetune_loss": fitted.losses["finetune"],
        "lm_loss": lm_loss,
        "parameters": sum(p.numel() for p in fitted.model.parameters()),
        "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {settings.threads} threads",
    }
    write_bundle(out, fitted.model, apps, attacks, tokenizer, shape, summary, evaluation, name, version,
                 quantized=quantize, lm_model=language_model, port_prior=fitted.port_prior,
                 thresholds=fitted.thresholds)  # fmt: skip
    text = render(evaluation) + ("\n\n" + render_loso(evaluation["loso"]) if loso else "")
    (out / "EVALUATION.txt").write_text(text + "\n", encoding="utf-8")
    return evaluation
