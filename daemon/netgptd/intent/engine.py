"""The edge LLM's intent tasks: operator sentences and observed windows to schema-valid intents."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compose import fields_of, realize
from .decoder import Decoded, constrained_decode
from .lang import Grammar, Vocab, encode_prompt, parse_output, prepare_text
from .observe import evidence_for, summarize
from .profile import SiteProfile, SiteState

DEFAULT_MODEL = Path(__file__).with_name("default_llm")
VOCAB_FILE = "intent_vocab.json"


@dataclass
class EdgeLLM:
    """A causal LM and its intent vocabulary (load with :meth:`load`)."""

    model: Any
    vocab: Vocab
    max_intents: int = 4

    @classmethod
    def load(cls, model_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
             threads: int | None = None) -> EdgeLLM:  # fmt: skip
        from ..llm.runtime import LLMError, load_causal_lm

        model_dir = Path(model_dir or DEFAULT_MODEL)
        if not (model_dir / VOCAB_FILE).is_file():
            raise LLMError(f"{model_dir}: not an intent model folder (no {VOCAB_FILE})")
        return cls(load_causal_lm(model_dir, adapter_dir, threads), Vocab.load(model_dir / VOCAB_FILE))

    def decode(self, task: str, prompt: list[str], n_ip: int, n_net: int, n_per: int) -> Decoded:
        grammar = Grammar(self.vocab, n_ip, n_net, n_per, window=task == "op", max_intents=self.max_intents if task == "op" else 6)
        return constrained_decode(self.model, encode_prompt(self.vocab, task, prompt), grammar)


_CACHE: dict[tuple[str, str], EdgeLLM] = {}


def default_llm(model_dir: str | Path | None = None, adapter_dir: str | Path | None = None) -> EdgeLLM:
    key = (str(model_dir or DEFAULT_MODEL), str(adapter_dir or ""))
    if key not in _CACHE:
        _CACHE[key] = EdgeLLM.load(model_dir, adapter_dir)
    return _CACHE[key]


def _intents(llm: EdgeLLM, decoded: Decoded, ctx: Any, profile: SiteProfile, source: str,
             evidence: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    v = llm.vocab
    raws = parse_output(v, decoded.ids)
    confs = decoded.intent_confidences(v.id(";"), v.id("<eos>"))
    out = []
    for raw, conf in zip(raws, confs):
        out.append(realize(raw, ctx, profile, source, conf, evidence(raw) if evidence else ""))
    return out


def intent_from_text(sentence: str, profile: SiteProfile | None = None, state: SiteState | None = None,
                     llm: EdgeLLM | None = None, details: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Schema-valid intents (``source: operator``) for an operator's sentence, completed with the site profile.

    ``details``, when given, receives ``repaired`` (the constraint had to override the model) and ``tokens``."""
    profile = profile or SiteProfile()
    llm = llm or default_llm()
    prompt, ctx = prepare_text(sentence, profile, state)
    decoded = llm.decode("op", prompt, len(ctx.ips), len(ctx.nets), len(ctx.periods))
    if details is not None:
        details.update(repaired=decoded.repaired, prompt=prompt, tokens=[llm.vocab.tokens[i] for i in decoded.ids])
    return _intents(llm, decoded, ctx, profile, "operator")


def intents_from_window(window: Any, alerts: list[dict[str, Any]], profile: SiteProfile | None = None,
                        llm: EdgeLLM | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Schema-valid intents (``source: observed``) the edge LLM proposes for one window and its alerts."""
    profile = profile or SiteProfile()
    llm = llm or default_llm()
    prompt, feats, ctx = summarize(window, alerts)
    decoded = llm.decode("obs", prompt, len(ctx.ips), 0, 0)
    return _intents(llm, decoded, ctx, profile, "observed", lambda raw: evidence_for(raw.targets, feats, window))


FIELDS = ("action", "application", "host", "subnet", "window")


def evaluate(path: str | Path, llm: EdgeLLM | None = None, limit: int | None = None) -> dict[str, Any]:
    """Exact match, per-field accuracy, no-repair share and latency on an evaluation file (JSONL).

    Each line: ``text``, ``profile`` (a :class:`SiteProfile` as a dict), ``intents`` (gold: action,
    application, host, subnet, window label). Per-field accuracy counts gold intents, matched by
    position; a missing predicted intent is wrong on every field; ``count`` is per sentence."""
    import torch

    llm = llm or default_llm()
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
    right = dict.fromkeys(FIELDS, 0)
    n_gold = exact = count_ok = no_repair = valid = 0
    times: list[float] = []
    failures: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for ex in lines:
            profile = SiteProfile.from_dict(ex["profile"])
            details: dict[str, Any] = {}
            t0 = time.perf_counter()
            pred = intent_from_text(ex["text"], profile, None, llm, details)
            times.append(time.perf_counter() - t0)
            valid += 1  # realize() validated every intent
            no_repair += not details["repaired"]
            got = [fields_of(p) for p in pred]
            gold = [dict(g, application=sorted(g["application"]), host=sorted(g["host"]), subnet=sorted(g["subnet"]))
                    for g in ex["intents"]]  # fmt: skip
            count_ok += len(got) == len(gold)
            exact += got == gold
            if got != gold and len(failures) < 20:
                failures.append({"text": ex["text"], "gold": gold, "got": got, "template": ex.get("template")})
            for k, g in enumerate(gold):
                n_gold += 1
                for f in FIELDS:
                    right[f] += k < len(got) and got[k][f] == g[f]
    finally:
        torch.set_num_threads(threads)
    n = len(lines)
    times.sort()
    return {
        "sentences": n, "intents": n_gold,
        "exact_match": exact / n if n else 0.0,
        "per_field": {f: right[f] / n_gold if n_gold else 0.0 for f in FIELDS} | {"count": count_ok / n if n else 0.0},
        "no_repair": no_repair / n if n else 0.0,
        "schema_valid": valid / n if n else 0.0,
        "latency_ms": {"mean": 1000 * sum(times) / n if n else 0.0, "p50": 1000 * times[n // 2] if n else 0.0,
                       "p95": 1000 * times[int(n * 0.95)] if n else 0.0, "max": 1000 * times[-1] if n else 0.0},
        "failures": failures,
    }  # fmt: skip
