"""Fitting the open-set threshold (``model.open_set``) on validation flows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from netgptd.model.open_set import OpenSet
from netgptd.train.metrics import score

CANDIDATES = tuple(round(0.05 * i, 2) for i in range(20))  # 0.0 (never abstain) to 0.95


def fit_open_set(app_p: np.ndarray, targets: Sequence[str], apps: Sequence[str]) -> OpenSet:
    """The threshold with the best application macro-F1 on these flows (the lowest of equals)."""
    apps = list(apps)
    best, best_f1 = OpenSet(), -1.0
    for threshold in CANDIDATES:
        candidate = OpenSet(threshold)
        predicted = [apps[i] for i in candidate.decide(app_p, apps).tolist()]
        f1 = score(list(targets), predicted, apps).macro_f1
        if f1 > best_f1 + 1e-9:
            best, best_f1 = candidate, f1
    return best
