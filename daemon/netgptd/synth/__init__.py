"""Synthetic traffic: frame builders and capture-file writers (pure, no I/O of their own)."""
