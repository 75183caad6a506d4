"""The leave-one-source-out table (``loso``) as ``netgptd eval`` and the model card print it.

No torch here: ``netgptd eval`` reads it back from a manifest.
"""

from __future__ import annotations

from typing import Any, Mapping

from netgptd.train.evaluate import NETGPT, PORT_BLIND, PORT_LOOKUP

SCORERS = (NETGPT, PORT_BLIND, PORT_LOOKUP)


def _cell(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def render_loso(result: Mapping[str, Any]) -> str:
    """The leave-one-source-out table ``netgptd eval`` prints."""
    metrics = (("macro_f1", "F1"), ("accuracy", "acc"), ("unknown_recall", "unk-R"), ("oov_named", "OOV-named"))
    lines = [
        "Leave one source out (trained without the source, judged on all of its flows; "
        "macro-F1 over the classes with flows there):",
        "  " + f"{'source':<32}{'flows':>6}{'apps':>5}  " + "  ".join(f"{n:^27}" for n in SCORERS),
        "  " + " " * 45 + "  ".join(" ".join(f"{h:>6}" for _, h in metrics[:3]) + f"{metrics[3][1]:>7}"
                                     for _ in SCORERS),
    ]  # fmt: skip
    rows = [dict(r, label=r["source"]) for r in result["sources"]]
    rows.append({"label": "pooled", "test_flows": result["pooled"]["flows"], "apps": "", **result["pooled"]})
    for r in rows:
        cells = "  ".join(" ".join(f"{_cell(r['scorers'][n][k]):>6}" for k, _ in metrics[:3])
                          + f"{_cell(r['scorers'][n]['oov_named']):>7}" for n in SCORERS)  # fmt: skip
        lines.append(f"  {r['label']:<32}{r['test_flows']:>6}{r['apps']!s:>5}  {cells}")
    lines += ["", "  Attacks per held-out source (mining recall / benign flows flagged):"]
    for r in rows:
        cells = "  ".join(f"{n}: {_cell(r['scorers'][n]['mining_recall'])} / {_cell(r['scorers'][n]['benign_flagged'])}"
                          for n in SCORERS)  # fmt: skip
        lines.append(f"  {r['label']:<32}{cells}")
    lines += ["", "  Top confusions of NetGPT per source:"]
    for r in rows:
        lines.append(f"  {r['label']:<32}{'; '.join(r['scorers'][NETGPT]['confusions'])}")
    return "\n".join(lines)
