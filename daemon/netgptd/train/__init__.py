"""Training, evaluation and export of NetGPT (the ``train`` extra: torch, transformers, peft)."""
