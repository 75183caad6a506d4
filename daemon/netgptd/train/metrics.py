"""Scores of a classifier on a test set: per class, macro, and where it errs.

No numpy or torch needed: labels are class names. Precision of a class that
is never predicted is 0 (likewise recall and F1 of a class without support).
Macro-F1 averages only the classes that have support in the test set, so a
class the split left without test flows neither helps nor hurts; the
output names how many classes that is. Predictions of such a class still
count as errors against the true class (they lower its recall).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence


@dataclass(frozen=True)
class ClassReport:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # true flows of the class in the test set
    predicted: int  # flows predicted as the class

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    classes: tuple[ClassReport, ...]
    accuracy: float
    macro_f1: float
    macro_over: tuple[str, ...]  # the classes macro-F1 averages (those with support)
    total: int
    confusions: tuple[tuple[str, str, int], ...] = field(default=())  # (true, predicted, flows), most first

    def by_class(self) -> dict[str, ClassReport]:
        return {c.name: c for c in self.classes}

    def confusion_lines(self, top: int = 5) -> list[str]:
        return [f"{t} → {p}: {n}" for t, p, n in self.confusions[:top]]

    def to_dict(self) -> dict[str, object]:
        """JSON-able (for the model manifest); ``from_dict`` reads it back."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_over": list(self.macro_over),
            "total": self.total,
            "classes": [c.to_dict() for c in self.classes],
            "confusions": [{"true": t, "predicted": p, "flows": n} for t, p, n in self.confusions],
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> Report:
        classes = tuple(ClassReport(**c) for c in values["classes"])  # type: ignore[arg-type,attr-defined]
        confusions = tuple((c["true"], c["predicted"], c["flows"]) for c in values["confusions"])  # type: ignore[attr-defined,index]
        return cls(classes, float(values["accuracy"]), float(values["macro_f1"]),  # type: ignore[arg-type]
                   tuple(values["macro_over"]), int(values["total"]), confusions)  # type: ignore[arg-type,call-overload]  # fmt: skip


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def score(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str], top_confusions: int = 10) -> Report:
    """Per-class precision/recall/F1, accuracy, macro-F1 over the classes with
    test support, and the most frequent confusions. Every label must be one of
    ``classes`` (map unknown applications to ``unknown`` first)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    known = set(classes)
    stray = (set(y_true) | set(y_pred)) - known
    if stray:
        raise ValueError(f"labels not among the classes: {sorted(stray)}")
    pairs = Counter(zip(y_true, y_pred))
    support = Counter(y_true)
    predicted = Counter(y_pred)
    reports = []
    for name in classes:
        hits = pairs[(name, name)]
        precision = _ratio(hits, predicted[name])
        recall = _ratio(hits, support[name])
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        reports.append(ClassReport(name, precision, recall, f1, support[name], predicted[name]))
    over = tuple(r.name for r in reports if r.support)
    macro = sum(r.f1 for r in reports if r.support) / len(over) if over else 0.0
    correct = sum(n for (t, p), n in pairs.items() if t == p)
    errors = sorted(((t, p, n) for (t, p), n in pairs.items() if t != p), key=lambda c: (-c[2], c[0], c[1]))
    return Report(tuple(reports), _ratio(correct, len(y_true)), macro, over, len(y_true), tuple(errors[:top_confusions]))


# -- rendering ---------------------------------------------------------------------


def _cell(value: float) -> str:
    return f"{value:.2f}".removeprefix("0") if value < 1 else "1.0"


def format_table(reports: Mapping[str, Report], title: str = "", confusions: int = 3) -> str:
    """Per-class rows, one column group (P R F1) per scorer, then macro-F1,
    accuracy and each scorer's top confusions. Classes: those of the first
    report, in its order; support is the first report's."""
    names = list(reports)
    if not names:
        return f"{title}\n(no scorers)" if title else "(no scorers)"
    first = reports[names[0]]
    width = max([len("class"), len("macro-F1")] + [len(c.name) for c in first.classes])
    group = max(14, *(len(n) for n in names))
    head = f"{'class':<{width}} {'flows':>6}  " + "  ".join(f"{n:^{group}}" for n in names)
    sub = f"{'':<{width}} {'':>6}  " + "  ".join(f"{'   P    R   F1':>{group}}" for _ in names)
    lines = [title] if title else []
    lines += [head, sub, "-" * len(head)]
    for c in first.classes:
        cells = []
        for n in names:
            r = reports[n].by_class().get(c.name)
            cells.append(f"{_cell(r.precision):>4} {_cell(r.recall):>4} {_cell(r.f1):>4}" if r else "-")
        lines.append(f"{c.name:<{width}} {c.support:>6}  " + "  ".join(f"{x:>{group}}" for x in cells))
    lines.append("-" * len(head))
    lines.append(f"{'macro-F1':<{width}} {'':>6}  " + "  ".join(f"{reports[n].macro_f1:>{group}.3f}" for n in names))
    lines.append(f"{'accuracy':<{width}} {first.total:>6}  " + "  ".join(f"{reports[n].accuracy:>{group}.3f}" for n in names))
    over = first.macro_over
    absent = [c.name for c in first.classes if c.name not in over]
    note = f"macro-F1 over the {len(over)} of {len(first.classes)} classes with flows in the test set"
    lines.append(note + (f" (left out: {', '.join(absent)})" if absent else ""))
    if confusions:
        for n in names:
            top = reports[n].confusion_lines(confusions)
            lines.append(f"top confusions, {n}: " + ("; ".join(top) if top else "none"))
    return "\n".join(lines)
