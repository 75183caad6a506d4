"""The edge LLM's loader: local folders only, readable errors, and loads from several threads at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from netgptd.intent.engine import DEFAULT_MODEL  # noqa: E402
from netgptd.llm.runtime import LLMError, load_causal_lm  # noqa: E402


def test_missing_folders_are_readable_errors(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="not a model folder"):
        load_causal_lm(tmp_path / "nowhere")
    with pytest.raises(LLMError, match="not a LoRA adapter folder"):
        load_causal_lm(DEFAULT_MODEL, adapter_dir=tmp_path)


def test_loads_from_threads_at_once_give_the_same_model() -> None:
    """transformers keeps process-wide state while it builds a model: concurrent loads must not break one."""
    reference = load_causal_lm(DEFAULT_MODEL)
    ids = torch.arange(1, 17).unsqueeze(0)
    with torch.no_grad():
        expected = reference(ids).logits
    models: list[object] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            models.append(load_causal_lm(DEFAULT_MODEL))
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(models) == 3
    with torch.no_grad():
        for model in models:
            assert torch.allclose(model(ids).logits, expected)
