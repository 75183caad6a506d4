"""Verdict thresholds: an unlikely named app is ``unknown``, an unsure attack is ``benign``; both fitted on validation flows."""

from __future__ import annotations

import numpy as np

from netgptd.model.thresholds import Thresholds
from netgptd.train.calibration import fit_attack_at, fit_unknown_below

APPS = ("DNS", "TLS", "unknown")
ATTACKS = ("benign", "mining")


def test_below_the_threshold_a_named_app_becomes_unknown() -> None:
    p = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert Thresholds(unknown_below=0.6).apps(p, APPS).tolist() == [0, 2, 2]
    assert Thresholds().apps(p, APPS).tolist() == [0, 0, 2]  # 0: never abstains
    assert Thresholds(unknown_below=0.6).apps(p, ("DNS", "TLS", "HTTP")).tolist() == [0, 0, 2]  # no unknown: argmax


def test_an_unsure_attack_is_benign() -> None:
    p = np.array([[0.2, 0.8], [0.01, 0.99], [0.6, 0.4]])
    assert Thresholds(attack_at=0.9).attacks(p, ATTACKS).tolist() == [0, 1, 0]
    assert Thresholds().attacks(p, ATTACKS).tolist() == [1, 1, 0]


def test_the_fitted_threshold_sends_out_of_vocabulary_flows_to_unknown() -> None:
    """Sure flows of the known apps, and hesitant ones of an app the model never
    learned: the threshold that serves macro-F1 best lies between them."""
    rng = np.random.default_rng(0)
    known = [[0.9 + 0.09 * rng.random(), 0.0, 0.0] for _ in range(20)] + [[0.0, 0.85 + 0.1 * rng.random(), 0.0] for _ in range(20)]
    strange = [[0.45 + 0.1 * rng.random(), 0.0, 0.0] for _ in range(10)]
    p = np.array(known + strange)
    p[:, 2] = 1 - p[:, :2].sum(axis=1)
    truth = ["DNS"] * 20 + ["TLS"] * 20 + ["unknown"] * 10
    threshold = fit_unknown_below(p, truth, APPS)
    assert 0.55 <= threshold <= 0.85
    assert [APPS[i] for i in Thresholds(unknown_below=threshold).apps(p, APPS)] == truth
    # Nothing to abstain on: never abstaining is as good as any, and the lowest wins.
    assert fit_unknown_below(p[:40], truth[:40], APPS) == 0.0


def test_the_attack_threshold_is_the_lowest_that_keeps_benign_flows_quiet() -> None:
    """2,000 benign flows, three of them with mining at 0.6, 0.85 and 0.97; miners at 0.995."""
    benign = np.tile([0.9, 0.1], (2000, 1))
    benign[0], benign[1], benign[2] = [0.4, 0.6], [0.15, 0.85], [0.03, 0.97]
    miners = np.tile([0.005, 0.995], (50, 1))
    p = np.vstack([benign, miners])
    truth = ["benign"] * 2000 + ["mining"] * 50
    # Up to 0.5 all three are flagged (0.15 %); 0.7 flags two in 2,000, within 0.1 %: the lowest that does.
    assert fit_attack_at(p, truth, ATTACKS) == 0.7
    assert fit_attack_at(miners, ["mining"] * 50, ATTACKS) == 0.0  # no benign flows: the argmax
