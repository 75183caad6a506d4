"""Intents: operator sentences (the pretrained encoder, :mod:`nlu`) and observed windows (the small GPT)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compose import realize
from .decoder import Decoded, constrained_decode
from .lang import Grammar, Vocab, encode_prompt, parse_output
from .nlu import ActionModel, default_model
from .nlu_eval import TODAY, keyword_run, load, score
from .observe import evidence_for, summarize
from .profile import SiteProfile, SiteState
from .understand import Understanding

DEFAULT_MODEL = Path(__file__).with_name("default_llm")
VOCAB_FILE = "intent_vocab.json"


@dataclass
class EdgeLLM:
    """A causal LM and its intent vocabulary (load with :meth:`load`)."""

    model: Any
    vocab: Vocab

    @classmethod
    def load(cls, model_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
             threads: int | None = None) -> EdgeLLM:  # fmt: skip
        from ..llm.runtime import LLMError, load_causal_lm

        model_dir = Path(model_dir or DEFAULT_MODEL)
        if not (model_dir / VOCAB_FILE).is_file():
            raise LLMError(f"{model_dir}: not an intent model folder (no {VOCAB_FILE})")
        return cls(load_causal_lm(model_dir, adapter_dir, threads), Vocab.load(model_dir / VOCAB_FILE))

    def decode(self, prompt: list[str], n_ip: int) -> Decoded:
        """The observed task: a window summary to intents on its addresses (no windows of time)."""
        return constrained_decode(self.model, encode_prompt(self.vocab, "obs", prompt), Grammar(self.vocab, n_ip, 0, 0, window=False, max_intents=6))


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


def understand_text(sentence: str, profile: SiteProfile | None = None, state: SiteState | None = None,
                    model: ActionModel | None = None) -> Understanding:  # fmt: skip
    """The operator's text read by the encoder-based model: schema-valid intents (``source: operator``) and, for
    what yielded none, why (``not_understood``). ``profile`` None: no named places, hosts, periods or hours."""
    return (model or default_model()).understand(sentence, profile, state)


def intent_from_text(sentence: str, profile: SiteProfile | None = None, state: SiteState | None = None,
                     model: ActionModel | None = None) -> list[dict[str, Any]]:  # fmt: skip
    return understand_text(sentence, profile, state, model).intents


def intents_from_window(window: Any, alerts: list[dict[str, Any]], profile: SiteProfile | None = None,
                        llm: EdgeLLM | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Schema-valid intents (``source: observed``) the edge LLM proposes for one window and its alerts."""
    profile = profile or SiteProfile()
    llm = llm or default_llm()
    prompt, feats, ctx = summarize(window, alerts)
    decoded = llm.decode(prompt, len(ctx.ips))
    return _intents(llm, decoded, ctx, profile, "observed", lambda raw: evidence_for(raw.targets, feats, window))


def evaluate(path: str | Path, model: ActionModel | None = None) -> dict[str, Any]:
    """The model and the keyword baseline scored side by side on an evaluation file (:mod:`nlu_eval`)."""
    model = model or default_model()
    lines = load(path)
    return {"file": str(path), "model": score(lines, lambda text, profile: model.understand(text, profile, None, TODAY)),
            "keyword_baseline": score(lines, keyword_run)}  # fmt: skip
