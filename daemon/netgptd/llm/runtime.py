"""Loading a local causal LM (and an optional LoRA adapter) for the edge LLM's tasks.

Nothing is ever downloaded: ``local_files_only`` everywhere, and a folder
that is not there is a readable :class:`LLMError`. torch and transformers
are imported here, on first use, so the traffic path never pays for them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

# transformers builds a model under process-wide state (init contexts, the meta device): two threads
# loading at once get a broken model (a tied lm_head "newly initialized") or an error. Plugins load
# their models in their own threads, so every load holds this.
_LOADING = threading.Lock()


class LLMError(Exception):
    """A model or adapter folder that cannot be used (the message names it)."""


def load_causal_lm(model_dir: str | Path, adapter_dir: str | Path | None = None, threads: int | None = None,
                   merge: bool = False) -> Any:  # fmt: skip
    """A causal LM in eval mode from ``model_dir`` (a Hugging Face folder), with the LoRA adapter applied if
    given (``merge``: folded into the weights, no per-token cost, no longer trainable)."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise LLMError(f"the edge LLM needs the train extra (pip install 'netgptd[train]'): {exc}") from None
    transformers.logging.disable_progress_bar()  # a daemon's log is JSON lines, not progress bars
    if threads:
        torch.set_num_threads(threads)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LLMError(f"{model_dir}: not a model folder (no config.json)")
    with _LOADING:
        return _load(model_dir, adapter_dir, merge)


def _load(model_dir: Path, adapter_dir: str | Path | None, merge: bool) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise LLMError(f"{model_dir}: cannot load: {exc}") from None
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise LLMError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise LLMError(f"{adapter_dir}: cannot load adapter: {exc}") from None
        if merge:
            model = model.merge_and_unload()
    return model.eval()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch work in this block on one core. A window's prompt is a few dozen tokens: with torch's default
    (every core) a decode contends with the pipeline and is several times slower (measured on 2 cores: a
    median of 96 ms against 15 ms per window, a tail of 1 s against 45 ms). The count is torch's process-wide
    default (threads that start meanwhile take it), so it is put back at once. Without torch loaded: nothing."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)
