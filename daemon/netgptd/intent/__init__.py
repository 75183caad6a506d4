"""Network intents: a JSON schema, operator texts (a pretrained encoder) and observed windows (a small GPT).

Public API:

- :func:`intent_from_text` (operator text + :class:`SiteProfile` + :class:`SiteState` -> intents)
- :func:`intents_from_window` (a trend ``Window`` + its alert events -> intents), :class:`IntentDeduper`
- :func:`evaluate` (an evaluation JSONL file -> the model's and a keyword baseline's scores),
  :func:`finetune` (a site's LoRA and action head from its phrasings)
- :func:`validate` / :func:`load_schema` (``schema.json``)

torch and transformers are imported only by the observed windows' model and by training.
"""

from __future__ import annotations

from typing import Any

from .observe import IntentDeduper
from .profile import ProfileError, SiteProfile, SiteState, load_profile
from .schema import SchemaError, is_valid, load_schema, validate

__all__ = ["IntentDeduper", "ProfileError", "SchemaError", "SiteProfile", "SiteState", "evaluate", "finetune",
           "intent_from_text", "intents_from_window", "is_valid", "load_profile", "load_schema", "validate"]  # fmt: skip


def intent_from_text(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    from .engine import intent_from_text as impl

    return impl(*args, **kwargs)


def intents_from_window(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    from .engine import intents_from_window as impl

    return impl(*args, **kwargs)


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from .engine import evaluate as impl

    return impl(*args, **kwargs)


def finetune(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from .nlu_train import finetune as impl

    return impl(*args, **kwargs)
