"""Scoring operator-intent understanding on sentences written independently of its training phrasings.

An evaluation file (JSON Lines) holds per sentence ``text``, ``profile`` (a
:class:`SiteProfile` as a dict, or null for none), ``intents`` (gold: action,
``apps`` as product names, ``categories``, ``hosts``, ``subnets``, ``window``
label; empty: the sentence must be abstained on) and ``note`` (for an
abstention: its reason first, one of off-topic, information question,
negated/undo, unresolved, an action outside the seven; :func:`abstain_reason`). Shipped: ``eval/test.jsonl`` (the test, never used
to fit anything) and ``eval/validation.jsonl`` (calibration and threshold).

Gold and predicted intents are paired greedily (same action first, then the
target); per field, a gold intent counts as right when its pair has that
field equal. Contradicting pairs: two intents of one text with different
enforcing actions (block, rate_limit, prioritize, deprioritize, isolate) on
a shared target. Abstention is scored per sentence; ``offtopic_abstained`` is
the share of off-topic and information-question sentences with no intent.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Callable

from .apps import lexicon
from .profile import SiteProfile
from .understand import Understanding, contradicts, understand

EVAL_DIR = Path(__file__).with_name("eval")
TEST_FILE, VALIDATION_FILE = EVAL_DIR / "test.jsonl", EVAL_DIR / "validation.jsonl"
TODAY = _dt.date(2026, 12, 3)  # windows such as "tonight" are dated: one fixed day keeps scores repeatable


def load(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def gold_fields(g: dict[str, Any]) -> dict[str, Any]:
    lex = lexicon()
    apps = {n for p in g["apps"] for n in lex.ndpi_names(p)} | {n for c in g["categories"] for n in lex.ndpi_names("category:" + c)}
    return {"action": g["action"], "application": sorted(apps), "host": sorted(g["hosts"]), "subnet": sorted(g["subnets"]),
            "window": _window_key(g["window"])}  # fmt: skip


def _window_key(label: Any) -> str | None:
    """Writers give ``HH:MM-HH:MM[ days]`` for clock windows; predicted clock windows are keyed the same way."""
    return label if label is None else str(label).strip().lower()


def predicted_fields(intent: dict[str, Any]) -> dict[str, Any]:
    t = intent["target"]
    w = intent.get("window")
    key = None
    if w:
        key = w.get("label")
        if key in ("clock", "days"):
            key = (f"{w['start']}-{w['end']}" if key == "clock" else "") + (" " + ",".join(w["days"]) if w.get("days") else "")
            key = key.strip()
    return {"action": intent["action"], "application": sorted(t.get("application", [])), "host": sorted(t.get("host", [])),
            "subnet": sorted(t.get("subnet", [])), "window": _window_key(key)}  # fmt: skip


def _target(f: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(f["application"]), tuple(f["host"]), tuple(f["subnet"])


def pair(gold: list[dict[str, Any]], pred: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    left = list(pred)
    out = []
    for g in gold:
        best = max(left, key=lambda p: 4 * (p["action"] == g["action"]) + 2 * (_target(p) == _target(g)) + (p["window"] == g["window"]),
                   default=None)  # fmt: skip
        if best is not None:
            left.remove(best)
        out.append((g, best))
    return out


def score(lines: list[dict[str, Any]], run: Callable[[str, SiteProfile | None], Understanding]) -> dict[str, Any]:
    """Per-field accuracy over gold intents, abstention, extra and contradicting intents, confidence bins, latency."""
    fields = ("action", "target", "window")
    right = dict.fromkeys(fields + ("exact",), 0)
    n_gold = extra = contradicting = 0
    abstain = {"gold": 0, "ours": 0, "both": 0}
    by_reason: dict[str, list[int]] = {}
    confs: list[tuple[float, bool]] = []
    failures: list[dict[str, Any]] = []
    times: list[float] = []
    for ex in lines:
        profile = SiteProfile.from_dict(ex["profile"]) if ex.get("profile") else None
        t0 = time.perf_counter()
        result = run(ex["text"], profile)
        times.append(time.perf_counter() - t0)
        pred = [predicted_fields(i) for i in result.intents]
        gold = [gold_fields(g) for g in ex["intents"]]
        matched = pair(gold, pred)
        ok_sentence = len(pred) == len(gold)
        for g, p in matched:
            n_gold += 1
            hit = {"action": bool(p) and p["action"] == g["action"], "target": bool(p) and _target(p) == _target(g),
                   "window": bool(p) and p["window"] == g["window"]}  # fmt: skip
            for f in fields:
                right[f] += hit[f]
            right["exact"] += all(hit.values())
            ok_sentence &= all(hit.values())
        used = {id(p) for _, p in matched if p is not None}
        extra += sum(id(p) not in used for p in pred)
        for i, a in enumerate(result.intents):
            for b in result.intents[i + 1 :]:
                contradicting += contradicts(a, b)
        for intent, p in zip(result.intents, pred):
            confs.append((intent["confidence"], any(p == g for g in gold)))
        abstain["gold"] += not gold
        abstain["ours"] += not pred
        abstain["both"] += not gold and not pred
        if not gold:
            by_reason.setdefault(abstain_reason(ex.get("note", "")), []).append(not pred)
        if not ok_sentence and len(failures) < 400:
            failures.append({"id": ex.get("id"), "text": ex["text"], "gold": gold, "got": pred, "not_understood": result.not_understood})
    n = len(lines)
    actionable = n_gold or 1
    times.sort()
    off = by_reason.get("offtopic", []) + by_reason.get("info", [])
    return {
        "sentences": n, "gold_intents": n_gold,
        "accuracy": {f: round(right[f] / actionable, 4) for f in (*fields, "exact")},
        "extra_intents": extra, "contradicting_pairs": contradicting,
        "abstention": {"gold_abstain": abstain["gold"], "abstained": abstain["ours"],
                       "precision": round(abstain["both"] / abstain["ours"], 4) if abstain["ours"] else None,
                       "recall": round(abstain["both"] / abstain["gold"], 4) if abstain["gold"] else None,
                       "offtopic_abstained": round(sum(off) / len(off), 4) if off else None,
                       "by_reason": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_reason.items())}},
        "calibration": calibration(confs),
        "latency_ms": {"p50": round(1000 * times[n // 2], 1), "p95": round(1000 * times[int(n * 0.95)], 1)} if n else {},
        "failures": failures,
    }  # fmt: skip


REASONS = {"offtopic": ("offtopic", "off-topic"), "info": ("info", "information", "question"),
           "negated": ("negated", "undo"), "unresolved": ("unresolved", "unresolvable"), "outside": ("outside", "action")}


def abstain_reason(note: str) -> str:
    """The reason class of an abstention note (``abstain:offtopic - ...`` or ``off-topic: ...``, as the writers put it)."""
    head = note.lower().removeprefix("abstain:").lstrip()
    return next((r for r, words in REASONS.items() if head.startswith(words)), "unknown")


def calibration(confs: list[tuple[float, bool]], bins: int = 5) -> dict[str, Any]:
    """Expected calibration error and per-bin (mean confidence, accuracy, count) of emitted intents."""
    if not confs:
        return {"ece": None, "bins": []}
    edges = [0.0, 0.5, 0.7, 0.85, 0.95, 1.0001][: bins + 1]
    out, ece = [], 0.0
    for lo, hi in zip(edges, edges[1:]):
        inside = [(c, ok) for c, ok in confs if lo <= c < hi]
        if inside:
            mean_c = sum(c for c, _ in inside) / len(inside)
            acc = sum(ok for _, ok in inside) / len(inside)
            ece += len(inside) / len(confs) * abs(mean_c - acc)
            out.append({"range": f"{lo:.2f}-{min(hi, 1):.2f}", "confidence": round(mean_c, 3), "accuracy": round(acc, 3), "n": len(inside)})
    return {"ece": round(ece, 4), "bins": out}


# -------------------------------------------------------------- keyword baseline

KEYWORDS = [
    ("negated", ["don't", "dont", "do not", "never", "unblock", "stop blocking", "stop throttling", "allow", "leave"]),
    ("isolate", ["isolate", "quarantine", "disconnect", "cut off", "wall off"]),
    ("block", ["block", "ban", "deny", "drop", "kill", "stop", "shut"]),
    ("rate_limit", ["throttle", "rate limit", "rate-limit", "limit", "cap", "slow"]),
    ("deprioritize", ["deprioritize", "deprioritise", "lower priority", "low priority"]),
    ("prioritize", ["prioritize", "prioritise", "priority", "first"]),
    ("investigate", ["investigate", "look into", "check", "analyze", "analyse", "inspect", "examine"]),
    ("notify", ["notify", "alert", "tell me", "let me know", "warn"]),
]  # fmt: skip
QUESTION_WORDS = ("what", "who", "why", "how", "is", "are", "does", "do", "did", "which", "when", "where", "has", "any")


def keyword_classify(texts: list[str]) -> list[tuple[str, float]]:
    """The simplest competitor: the first action keyword found (a question by its first word and '?')."""
    out = []
    for text in texts:
        padded = f" {text} "
        if text.split()[:1] and text.split()[0] in QUESTION_WORDS:
            out.append(("question", 1.0))
            continue
        label = next((lab for lab, words in KEYWORDS if any(f" {w} " in padded for w in words)), None)
        out.append((label or ("context" if any(m in text for m in ("appname", "hostaddr", "netaddr")) else "other"), 1.0))
    return out


def keyword_run(text: str, profile: SiteProfile | None) -> Understanding:
    return understand(text, keyword_classify, profile, None, 0.0, TODAY)

