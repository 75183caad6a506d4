"""Leave one source out: what the model does on traffic from a project it never saw.

A split by capture file keeps every source on both sides, so a model can
score well by remembering how each project's captures look. Here each
source in turn (``FlowExample.origin``: ``ndpi``, ``mining``, ``lab``, each
``extra/OWNER__REPO``) is held out whole; NetGPT is fitted as it ships
(``fit.fit``: its own validation captures for the open-set threshold) on
the others, and judged on it beside a port lookup fitted on the same
training flows, and port-blind.

Per source and pooled over every held-out flow: application macro-F1 and
accuracy (over the classes with flows there), ``unknown`` recall (flows
nDPI could not name, or whose application is not among the fold's
classes), the share of out-of-vocabulary flows given a named label, and
for attacks mining recall and the share of benign flows flagged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import structlog

from netgptd.model.tokenizer import TokenizerConfig
from netgptd.train.baselines import PortLookup
from netgptd.train.dataset import Corpus, FlowExample, app_classes, attack_classes, split
from netgptd.train.evaluate import NETGPT, PORT_BLIND, PORT_LOOKUP, app_target, class_recall, false_alarm_rate, model_predictions
from netgptd.train.fit import VALIDATION_SHARE, fit
from netgptd.train.labels import UNKNOWN
from netgptd.train.loso_report import SCORERS
from netgptd.train.metrics import score
from netgptd.train.model import ModelShape
from netgptd.train.trainer import TrainSettings

log = structlog.get_logger(__name__)

MIN_TEST_FLOWS = 20  # a source with fewer is not held out on its own (its score would be noise)


def _rates(truth: Sequence[str], predicted: Sequence[str], oov: Sequence[bool]) -> dict[str, float | None]:
    named = [p != UNKNOWN for p, out in zip(predicted, oov) if out]
    return {
        "unknown_recall": class_recall(truth, predicted, UNKNOWN),
        "oov_named": sum(named) / len(named) if named else None,
    }


def _scores(truth: Mapping[str, Sequence[str]], predicted: Mapping[str, Mapping[str, Sequence[str]]],
            oov: Sequence[bool], classes: Sequence[str]) -> dict[str, dict[str, Any]]:  # fmt: skip
    out = {}
    for name, got in predicted.items():
        report = score(truth["apps"], got["apps"], classes)
        out[name] = {
            "macro_f1": report.macro_f1, "accuracy": report.accuracy, "classes": len(report.macro_over),
            **_rates(truth["apps"], got["apps"], oov),
            "mining_recall": class_recall(truth["attacks"], got["attacks"], "mining"),
            "benign_flagged": false_alarm_rate(truth["attacks"], got["attacks"]),
            "confusions": [f"{t} → {p}: {n}" for t, p, n in report.confusions[:3]],
        }  # fmt: skip
    return out


def _fold(examples: Sequence[FlowExample], source: str, tokenizer: TokenizerConfig, shape: ModelShape,
          settings: TrainSettings, progress: bool) -> dict[str, Any]:  # fmt: skip
    test = [e for e in examples if e.origin == source]
    learn = Corpus(examples=[e for e in examples if e.origin != source])
    train, validation = split(learn, VALIDATION_SHARE)
    apps, attacks = app_classes(train), attack_classes(examples)
    log.info("loso_fold", source=source, train_flows=len(train), validation_flows=len(validation),
             test_flows=len(test), apps=len(apps))  # fmt: skip
    fitted = fit(train, validation, apps, attacks, tokenizer, shape, settings, progress)
    blind = replace(tokenizer, server_port=False)
    predicted = {
        NETGPT: model_predictions(fitted.model, test, apps, attacks, tokenizer, fitted.port_prior, fitted.thresholds),
        PORT_BLIND: model_predictions(fitted.model, test, apps, attacks, blind, None, fitted.thresholds),
        PORT_LOOKUP: {
            "apps": PortLookup().fit(train, [app_target(e, apps) for e in train]).predict(test),
            "attacks": PortLookup().fit(train, [e.label.attack for e in train]).predict(test),
        },
    }
    return {
        "source": source,
        "train_flows": len(train),
        "test_flows": len(test),
        "test_captures": len({e.capture_id for e in test}),
        "apps": apps,
        "thresholds": fitted.thresholds.to_dict(),
        "truth": {"apps": [app_target(e, apps) for e in test], "attacks": [e.label.attack for e in test]},
        "oov": [e.label.app not in apps and e.label.app != UNKNOWN for e in test],
        "predicted": predicted,
    }


def leave_one_source_out(examples: Sequence[FlowExample], tokenizer: TokenizerConfig, shape: ModelShape,
                         settings: TrainSettings, progress: bool = True,
                         sources: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Every fold's scores and the pooled ones, JSON-able (for the manifest).
    ``sources``: the ones to hold out (default every source with enough flows)."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.origin] = counts.get(e.origin, 0) + 1
    held = [s for s in sorted(counts) if counts[s] >= MIN_TEST_FLOWS] if sources is None else list(sources)
    settings = replace(settings, lm_epochs=0)
    rows, pooled_truth, pooled_oov = [], {"apps": [], "attacks": []}, []
    pooled: dict[str, dict[str, list[str]]] = {n: {"apps": [], "attacks": []} for n in SCORERS}
    for source in held:
        fold = _fold(examples, source, tokenizer, shape, settings, progress)
        rows.append({
            **{k: fold[k] for k in ("source", "train_flows", "test_flows", "test_captures", "thresholds")},
            "apps": len(fold["apps"]),
            "scorers": _scores(fold["truth"], fold["predicted"], fold["oov"], fold["apps"]),
        })  # fmt: skip
        for task in ("apps", "attacks"):
            pooled_truth[task] += fold["truth"][task]
            for name in SCORERS:
                pooled[name][task] += fold["predicted"][name][task]
        pooled_oov += fold["oov"]
    classes = sorted(set(pooled_truth["apps"]).union(*(p["apps"] for p in pooled.values())))
    return {
        "sources": rows,
        "pooled": {"flows": len(pooled_truth["apps"]), "scorers": _scores(pooled_truth, pooled, pooled_oov, classes)},
        "settings": {"pretrain_epochs": settings.pretrain_epochs, "finetune_epochs": settings.finetune_epochs},
    }
