"""Constrained greedy decoding: at each step only tokens the grammar allows (a valid prefix) may be chosen.

Valid by construction: whatever the model's weights, the output is accepted
by :class:`lang.Grammar`, so it realizes to schema-valid intents. A step where
the model's own best token was *not* allowed is counted as a repair (the
constraint had to intervene); ``repaired`` is False when it never did.
"""

from __future__ import annotations

import inspect
import math
import random
from dataclasses import dataclass, field
from typing import Any

from .lang import Grammar


@dataclass
class Decoded:
    ids: list[int]
    logprobs: list[float] = field(default_factory=list)  # of each chosen token under the model's full distribution
    repairs: int = 0

    @property
    def repaired(self) -> bool:
        return self.repairs > 0

    def intent_confidences(self, semi: int, eos: int) -> list[float]:
        """Geometric-mean probability of each intent's tokens (its terminator included)."""
        out, acc = [], []
        for tok, lp in zip(self.ids, self.logprobs):
            acc.append(lp)
            if tok in (semi, eos):
                if len(acc) > 1 or tok == semi:
                    out.append(math.exp(sum(acc) / len(acc)))
                acc = []
        return out


def constrained_decode(model: Any, prompt: list[int], grammar: Grammar, max_steps: int = 256,
                       temperature: float = 0.0, seed: int | None = None) -> Decoded:  # fmt: skip
    """Decode after ``prompt`` under ``grammar`` (greedy, or sampled at ``temperature`` > 0)."""
    import torch

    rng = random.Random(seed)
    n_positions = getattr(getattr(model, "config", None), "n_positions", None)
    if n_positions:
        max_steps = min(max_steps, n_positions - len(prompt))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    state = grammar.start()
    out = Decoded([])
    past = None
    feed = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        for _ in range(max_steps):
            allowed = grammar.allowed(state)
            if not allowed:
                break
            result = model(input_ids=feed, use_cache=True, **{cache_arg: past})
            past = getattr(result, "cache", None)
            past = result.past_key_values if past is None else past
            logp = torch.log_softmax(result.logits[0, -1].float(), dim=-1)
            allowed_t = torch.tensor(allowed, dtype=torch.long)
            sub = logp[allowed_t]
            if temperature > 0:
                probs = torch.softmax(sub / temperature, dim=-1).tolist()
                tok = rng.choices(allowed, probs)[0]
            else:
                tok = allowed[int(torch.argmax(sub))]
            if int(torch.argmax(logp)) not in allowed:
                out.repairs += 1
            out.ids.append(tok)
            out.logprobs.append(float(logp[tok]))
            state = grammar.step(state, tok)
            feed = torch.tensor([[tok]], dtype=torch.long)
    if state.phase != "done":  # only when max_steps is too small for the grammar: close what is open
        while state.phase != "done":
            tok = grammar.eos if grammar.eos in grammar.allowed(state) else grammar.allowed(state)[0]
            out.ids.append(tok)
            out.logprobs.append(-10.0)
            out.repairs += 1
            state = grammar.step(state, tok)
    return out
