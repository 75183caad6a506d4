"""Evaluation that cannot flatter: NetGPT and its baselines on the same held-out captures.

The split is by capture file (``dataset.split``), never by flow. On the test
flows, for applications and attacks alike:

- ``NetGPT``: the fine-tuned model as served (server port given, as
  ``[PORT]`` tokens and through the port prior fitted on the training flows);
- ``NetGPT port-blind``: the same model with the server port masked and no
  port prior;
- ``NetGPT randomised``: the model on the test captures rewritten with
  random addresses and client ports (``leakage``); it must not score lower
  than the model on the same flows of the original captures;
- ``port lookup`` and ``byte LR``: the baselines of ``baselines``, fitted
  on the same training flows.

Besides the per-class reports: the false-alarm rate (benign flows flagged
as any attack), mining recall, and per test capture with attack flows the
share of them each scorer detects. Torch is imported only to run the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from netgptd.model.thresholds import Thresholds
from netgptd.model.port_prior import PortPrior
from netgptd.model.tokenizer import TokenizerConfig
from netgptd.train.baselines import ByteLogReg, PortLookup
from netgptd.train.dataset import FlowExample
from netgptd.train.labels import BENIGN, UNKNOWN
from netgptd.train.leakage import capture_paths, randomised_examples
from netgptd.train.metrics import Report, format_table, score

if TYPE_CHECKING:
    from netgptd.train.model import NetGPT

NETGPT, PORT_BLIND, RANDOMISED, PORT_LOOKUP, BYTE_LR = (
    "NetGPT", "NetGPT port-blind", "NetGPT randomised", "port lookup", "byte LR",
)  # fmt: skip
TASKS = ("apps", "attacks")


def app_target(example: FlowExample, apps: Sequence[str]) -> str:
    """The application class of a flow: its label, or ``unknown`` if not among ``apps``."""
    return example.label.app if example.label.app in apps else UNKNOWN


def _targets(examples: Sequence[FlowExample], apps: Sequence[str]) -> dict[str, list[str]]:
    return {"apps": [app_target(e, apps) for e in examples], "attacks": [e.label.attack for e in examples]}


def app_probabilities(model: NetGPT, examples: Sequence[FlowExample], config: TokenizerConfig,
                      port_prior: PortPrior | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Application and attack probabilities as served: with the server port and
    ``port_prior`` (when given), or port-blind (``port_prior`` None and ``config`` without the port)."""
    from netgptd.train.trainer import predict  # torch: only where the model runs

    app_p, attack_p = predict(model, examples, config)
    apps = app_p.numpy()
    if port_prior is not None:
        apps = port_prior.apply(apps, [(e.proto, e.server_port) for e in examples])
    return apps, attack_p.numpy()


def model_predictions(model: NetGPT, examples: Sequence[FlowExample], apps: Sequence[str], attacks: Sequence[str],
                       config: TokenizerConfig, port_prior: PortPrior | None,
                      thresholds: Thresholds = Thresholds()) -> dict[str, list[str]]:  # fmt: skip
    """The model's verdicts as served (``app_probabilities``, then ``thresholds``)."""
    if not examples:
        return {"apps": [], "attacks": []}
    app_p, attack_p = app_probabilities(model, examples, config, port_prior)
    return {
        "apps": [apps[i] for i in thresholds.apps(app_p, apps).tolist()],
        "attacks": [attacks[i] for i in thresholds.attacks(attack_p, attacks).tolist()],
    }


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def false_alarm_rate(y_true: Sequence[str], y_pred: Sequence[str]) -> float | None:
    """Share of benign flows flagged as any attack (None without benign flows)."""
    benign = [p for t, p in zip(y_true, y_pred) if t == BENIGN]
    return _rate(sum(p != BENIGN for p in benign), len(benign))


def class_recall(y_true: Sequence[str], y_pred: Sequence[str], name: str) -> float | None:
    pairs = [(t, p) for t, p in zip(y_true, y_pred) if t == name]
    return _rate(sum(t == p for t, p in pairs), len(pairs))


def per_capture(test: Sequence[FlowExample], y_true: Sequence[str],
                predictions: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:  # fmt: skip
    """For each test capture with attack flows: how many of them each scorer
    names as their attack (``detected``) and as any attack (``flagged``)."""
    by_capture: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(test):
        by_capture.setdefault((e.collection, e.capture), []).append(i)
    rows = []
    for (collection, capture), indices in sorted(by_capture.items()):
        attack_flows = [i for i in indices if y_true[i] != BENIGN]
        if not attack_flows:
            continue
        attack = Counter(y_true[i] for i in attack_flows).most_common(1)[0][0]
        row: dict[str, Any] = {
            "capture": capture, "collection": collection, "flows": len(indices),
            "attack_flows": len(attack_flows), "attack": attack, "scorers": {},
        }  # fmt: skip
        for name, pred in predictions.items():
            detected = sum(pred[i] == y_true[i] for i in attack_flows) / len(attack_flows)
            flagged = sum(pred[i] != BENIGN for i in attack_flows) / len(attack_flows)
            row["scorers"][name] = {"detected": detected, "flagged": flagged}
        rows.append(row)
    return rows


def per_collection(test: Sequence[FlowExample], y_true: Sequence[str], predictions: Mapping[str, Sequence[str]],
                   classes: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
    """Application macro-F1 and accuracy of each scorer on each collection's
    test flows: lab flows are many and regular, the corpus's fewer and harder,
    and the total alone would not say which carried a score."""
    by_collection: dict[str, list[int]] = {}
    for i, e in enumerate(test):
        by_collection.setdefault(e.collection, []).append(i)
    rows = []
    for collection, indices in sorted(by_collection.items()):
        truth = [y_true[i] for i in indices]
        reports = {name: score(truth, [pred[i] for i in indices], classes) for name, pred in predictions.items()}
        rows.append({
            "collection": collection, "flows": len(indices), "classes": len(next(iter(reports.values())).macro_over),
            "scorers": {name: {"macro_f1": r.macro_f1, "accuracy": r.accuracy} for name, r in reports.items()},
        })  # fmt: skip
    return rows


def _leakage(model: NetGPT, test: Sequence[FlowExample], apps: Sequence[str], attacks: Sequence[str],
             config: TokenizerConfig, port_prior: PortPrior | None, thresholds: Thresholds, roots: Iterable[Path], seed: int,
             workdir: Path | None, reports: dict[str, dict[str, Report]]) -> dict[str, object]:  # fmt: skip
    randomised = randomised_examples(test, capture_paths(roots), config, seed=seed, workdir=workdir)
    # The model on the same flows of the original captures, in the same order and batches.
    same = [test[i] for i in randomised.indices]
    before = model_predictions(model, same, apps, attacks, config, port_prior, thresholds)
    after = model_predictions(model, randomised.examples, apps, attacks, config, port_prior, thresholds)
    truth = _targets(same, apps)
    out: dict[str, object] = {
        "flows": len(randomised.examples), "test_flows": len(test), "unmatched": randomised.unmatched,
        "captures": randomised.captures, "missing_captures": randomised.missing_captures,
        "frames_left_as_they_were": dict(randomised.untouched_frames),
    }  # fmt: skip
    passed = bool(randomised.examples)
    for task, classes in (("apps", apps), ("attacks", attacks)):
        original = score(truth[task], before[task], classes)
        rewritten = score(truth[task], after[task], classes)
        reports[task][RANDOMISED] = rewritten
        drop = original.macro_f1 - rewritten.macro_f1
        passed = passed and drop <= 1e-9
        out[task] = {
            "macro_f1_original": original.macro_f1, "macro_f1_randomised": rewritten.macro_f1,
            "accuracy_original": original.accuracy, "accuracy_randomised": rewritten.accuracy,
            "drop": drop, "changed_predictions": sum(a != b for a, b in zip(before[task], after[task])),
        }  # fmt: skip
    out["passed"] = passed
    return out


def evaluate(model: NetGPT, train: Sequence[FlowExample], test: Sequence[FlowExample], apps: Sequence[str],
             attacks: Sequence[str], config: TokenizerConfig, port_prior: PortPrior | None = None,
             roots: Iterable[Path] = (), seed: int = 0, workdir: Path | None = None,
             thresholds: Thresholds = Thresholds()) -> dict[str, Any]:  # fmt: skip
    """Every score of the evaluation, JSON-able (it goes into the model manifest).

    ``roots`` are where the test captures lie (the corpus folders), for the
    leakage check; without them the check is reported as skipped.
    """
    apps, attacks = list(apps), list(attacks)
    truth = _targets(test, apps)
    train_truth = _targets(train, apps)
    predictions: dict[str, dict[str, list[str]]] = {task: {} for task in TASKS}
    blind = replace(config, server_port=False)
    for name, (tokens, prior) in ((NETGPT, (config, port_prior)), (PORT_BLIND, (blind, None))):
        got = model_predictions(model, test, apps, attacks, tokens, prior, thresholds)
        for task in TASKS:
            predictions[task][name] = got[task]
    for task in TASKS:
        predictions[task][PORT_LOOKUP] = PortLookup().fit(train, train_truth[task]).predict(test)
        predictions[task][BYTE_LR] = ByteLogReg(seed=seed).fit(train, train_truth[task]).predict(test)
    classes = {"apps": apps, "attacks": attacks}
    reports = {task: {name: score(truth[task], pred, classes[task]) for name, pred in predictions[task].items()}
               for task in TASKS}  # fmt: skip
    roots = list(roots)
    if roots:
        leakage = _leakage(model, test, apps, attacks, config, port_prior, thresholds, roots, seed, workdir, reports)
    else:
        leakage = {"skipped": "no capture folders given: the test captures cannot be rewritten"}
    order = [NETGPT, PORT_BLIND, RANDOMISED, PORT_LOOKUP, BYTE_LR]
    attack_pred = predictions["attacks"]
    split = {
        "by": "capture file",
        "train_flows": len(train),
        "test_flows": len(test),
        "train_captures": len({(e.collection, e.capture) for e in train}),
        "test_captures": len({(e.collection, e.capture) for e in test}),
    }
    sections = {
        task: {"classes": classes[task], "reports": {n: reports[task][n].to_dict() for n in order if n in reports[task]}}
        for task in TASKS
    }
    return {
        "split": split,
        "scorers": [n for n in order if n in reports["apps"]],
        **sections,
        "leakage": leakage,
        "false_alarm_rate": {n: false_alarm_rate(truth["attacks"], p) for n, p in attack_pred.items()},
        "mining_recall": {n: class_recall(truth["attacks"], p, "mining") for n, p in attack_pred.items()},
        "per_capture": per_capture(test, truth["attacks"], attack_pred),
        "apps_per_collection": per_collection(test, truth["apps"], predictions["apps"], apps),
    }


# -- the table ``netgptd eval`` prints ---------------------------------------------------


def _number(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _per_collection_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = list(rows[0]["scorers"])
    width = max(len("collection"), *(len(r["collection"]) for r in rows))
    lines = ["Applications per collection (macro-F1 over the classes with test flows there / accuracy):",
             f"  {'collection':<{width}} {'flows':>6} {'classes':>7}  " + "  ".join(f"{n:>18}" for n in names)]  # fmt: skip
    for r in rows:
        cells = "  ".join(f"{r['scorers'][n]['macro_f1']:>10.3f} / {r['scorers'][n]['accuracy']:.2f}" for n in names)
        lines.append(f"  {r['collection']:<{width}} {r['flows']:>6} {r['classes']:>7}  {cells}")
    return lines


def render(result: Mapping[str, Any]) -> str:
    """The evaluation as text: what ``netgptd eval`` prints (``result`` from
    ``evaluate``, or read back from a manifest)."""
    split = result["split"]
    lines = [
        (
            f"Split by capture file: {split['test_flows']} test flows from {split['test_captures']} captures "
            f"never seen in training ({split['train_flows']} training flows from {split['train_captures']} captures)."
        ),
        "",
    ]
    for task, title in (("apps", "Applications"), ("attacks", "Attacks")):
        reports = {n: Report.from_dict(r) for n, r in result[task]["reports"].items()}
        lines += [format_table(reports, title=title), ""]
        if task == "apps" and result.get("apps_per_collection"):
            lines += _per_collection_lines(result["apps_per_collection"]) + [""]
    leakage = result["leakage"]
    lines.append("Leakage check (addresses and client ports randomised in the test captures):")
    if "skipped" in leakage:
        lines.append(f"  skipped: {leakage['skipped']}")
    else:
        lines.append(
            f"  {leakage['flows']} of {leakage['test_flows']} test flows re-extracted "
            f"from {leakage['captures']} rewritten captures ({leakage['unmatched']} not found)"
        )
        for task in TASKS:
            t = leakage[task]
            lines.append(
                f"  {task}: macro-F1 {t['macro_f1_original']:.3f} original, {t['macro_f1_randomised']:.3f} "
                f"randomised (drop {t['drop']:+.3f}), {t['changed_predictions']} predictions changed"
            )
        lines.append("  PASS: no drop" if leakage["passed"] else "  FAIL: the model keys on addresses or ports")
    lines.append("")
    names = list(result["false_alarm_rate"])
    alarms = ", ".join(f"{n} {_number(result['false_alarm_rate'][n])}" for n in names)
    lines.append(f"False alarms (benign flows flagged as any attack): {alarms}")
    lines.append("Mining recall: " + ", ".join(f"{n} {_number(result['mining_recall'][n])}" for n in names))
    rows = result["per_capture"]
    if rows:
        lines += ["", "Attack detection per test capture (share of its attack flows named as their attack):"]
        width = max(len(f"{r['collection']}/{r['capture']}") for r in rows)
        lines.append(f"  {'capture':<{width}} {'attack':<10} {'flows':>6}  " + "  ".join(f"{n:>18}" for n in names))
        for r in rows:
            cells = "  ".join(f"{r['scorers'][n]['detected']:>18.3f}" for n in names)
            lines.append(f"  {r['collection'] + '/' + r['capture']:<{width}} {r['attack']:<10} {r['attack_flows']:>6}  {cells}")
    return "\n".join(lines)
