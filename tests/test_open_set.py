"""Open set: a flow whose likeliest named application is unlikely is ``unknown``; the threshold is fitted on validation flows."""

from __future__ import annotations

import numpy as np

from netgptd.model.open_set import OpenSet
from netgptd.train.calibration import fit_open_set

APPS = ("DNS", "TLS", "unknown")


def test_below_the_threshold_a_named_app_becomes_unknown() -> None:
    p = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert OpenSet(0.6).decide(p, APPS).tolist() == [0, 2, 2]
    assert OpenSet(0.0).decide(p, APPS).tolist() == [0, 0, 2]  # 0: never abstains
    assert OpenSet(0.6).decide(p, ("DNS", "TLS", "HTTP")).tolist() == [0, 0, 2]  # no unknown class: argmax


def test_the_fitted_threshold_sends_out_of_vocabulary_flows_to_unknown() -> None:
    """Sure flows of the known apps, and hesitant ones of an app the model never
    learned: the threshold that serves macro-F1 best lies between them."""
    rng = np.random.default_rng(0)
    known = [[0.9 + 0.09 * rng.random(), 0.0, 0.0] for _ in range(20)] + [[0.0, 0.85 + 0.1 * rng.random(), 0.0] for _ in range(20)]
    strange = [[0.45 + 0.1 * rng.random(), 0.0, 0.0] for _ in range(10)]
    p = np.array(known + strange)
    p[:, 2] = 1 - p[:, :2].sum(axis=1)
    truth = ["DNS"] * 20 + ["TLS"] * 20 + ["unknown"] * 10
    fitted = fit_open_set(p, truth, APPS)
    assert 0.55 <= fitted.threshold <= 0.85
    assert [APPS[i] for i in fitted.decide(p, APPS)] == truth
    # Nothing to abstain on: never abstaining is as good as any, and the lowest wins.
    assert fit_open_set(p[:40], truth[:40], APPS).threshold == 0.0
