"""One classifier fitted as it ships: NetGPT, its port prior and its verdict thresholds.

The model learns on ``train``; the port prior is counted on ``train``; the
open-set and attack thresholds (``model.thresholds``) are chosen on
``validation``, captures the model did not learn on, since on its own
training flows the model is surer than it will be on new traffic. ``netgptd train`` and every
leave-one-source-out fold fit through here, so both judge the same thing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch

from netgptd.model.thresholds import Thresholds
from netgptd.model.port_prior import PortPrior
from netgptd.model.tokenizer import TokenizerConfig, vocab_size
from netgptd.train.calibration import fit_attack_at, fit_unknown_below
from netgptd.train.dataset import FlowExample
from netgptd.train.evaluate import app_probabilities, app_target
from netgptd.train.model import ModelShape, NetGPT
from netgptd.train.trainer import TrainSettings, finetune, pretrain

VALIDATION_SHARE = 0.15  # of the training captures, held back for the open-set threshold


@dataclass
class Fitted:
    model: NetGPT
    apps: list[str]
    attacks: list[str]
    port_prior: PortPrior | None
    thresholds: Thresholds
    losses: dict[str, list[float]] = field(default_factory=dict)
    pretrained: NetGPT | None = None  # the weights as pretraining left them (the generation LM starts there)


def fit(train: Sequence[FlowExample], validation: Sequence[FlowExample], apps: Sequence[str],
        attacks: Sequence[str], tokenizer: TokenizerConfig, shape: ModelShape, settings: TrainSettings,
        progress: bool = True, keep_pretrained: bool = False) -> Fitted:  # fmt: skip
    apps, attacks = list(apps), list(attacks)
    model = NetGPT(shape, vocab_size(apps), len(apps), len(attacks))
    losses = {"pretrain": pretrain(model, train, apps, tokenizer, settings, progress)}
    pretrained = copy.deepcopy(model) if keep_pretrained else None
    losses["finetune"] = finetune(model, train, apps, attacks, tokenizer, settings, progress)
    # Serving applies a port prior only to a model that reads the port: fitted for such a model alone.
    port_prior = (PortPrior.fit((((e.proto, e.server_port), e.capture_id, app_target(e, apps)) for e in train), apps)
                  if tokenizer.server_port else None)  # fmt: skip
    thresholds = Thresholds()
    if validation:
        with torch.no_grad():
            app_p, attack_p = app_probabilities(model, validation, tokenizer, port_prior)
        thresholds = Thresholds(fit_unknown_below(app_p, [app_target(e, apps) for e in validation], apps),
                                fit_attack_at(attack_p, [e.label.attack for e in validation], attacks))  # fmt: skip
    return Fitted(model, apps, attacks, port_prior, thresholds, losses, pretrained)
