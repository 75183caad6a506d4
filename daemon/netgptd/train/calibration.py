"""Fitting the verdict thresholds (``model.thresholds``) on validation flows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from netgptd.model.thresholds import BENIGN, Thresholds
from netgptd.train.metrics import score

CANDIDATES = tuple(round(0.05 * i, 2) for i in range(20))  # 0.0 (never abstain) to 0.95
ATTACK_CANDIDATES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
MAX_BENIGN_FLAGGED = 0.001  # the share of benign validation flows an attack threshold may flag


def fit_unknown_below(app_p: np.ndarray, targets: Sequence[str], apps: Sequence[str]) -> float:
    """The open-set threshold with the best application macro-F1 on these flows (the lowest of equals)."""
    apps = list(apps)
    best, best_f1 = 0.0, -1.0
    for threshold in CANDIDATES:
        predicted = [apps[i] for i in Thresholds(unknown_below=threshold).apps(app_p, apps).tolist()]
        f1 = score(list(targets), predicted, apps).macro_f1
        if f1 > best_f1 + 1e-9:
            best, best_f1 = threshold, f1
    return best


def fit_attack_at(attack_p: np.ndarray, targets: Sequence[str], attacks: Sequence[str]) -> float:
    """The lowest attack threshold that flags at most ``MAX_BENIGN_FLAGGED`` of the benign flows
    here (the strictest candidate where none does)."""
    benign = np.array([t == BENIGN for t in targets])
    for threshold in ATTACK_CANDIDATES:
        flagged = Thresholds(attack_at=threshold).attacks(attack_p, attacks) != list(attacks).index(BENIGN)
        if not benign.any() or flagged[benign].mean() <= MAX_BENIGN_FLAGGED:
            return threshold
    return ATTACK_CANDIDATES[-1]
