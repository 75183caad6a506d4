"""Open set: a flow whose likeliest named application is not likely enough is ``unknown``.

The model has an ``unknown`` class, trained on flows nDPI could not name and
on applications too rare to learn; it still meets protocols unlike any of
those, and then spreads its belief over the named classes it resembles
(SSH read as HTTP, Kerberos as TLS). A flow whose top named class falls
below ``threshold`` (after the port prior) is served as ``unknown``: the
threshold is fitted at training on validation captures the model did not
train on, as the one that maximises application macro-F1 there, and lives
in the manifest (``train.calibration`` fits it). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNKNOWN = "unknown"


@dataclass(frozen=True)
class OpenSet:
    threshold: float = 0.0  # 0: never abstain (bundles made before it)

    def decide(self, app_p: np.ndarray, apps: Sequence[str]) -> np.ndarray:
        """The application index of each row: its argmax, or ``unknown``'s where
        that named class is below the threshold."""
        best = app_p.argmax(axis=-1)
        if UNKNOWN not in apps or not self.threshold:
            return best
        top = np.take_along_axis(app_p, best[:, None], axis=-1)[:, 0]
        return np.where(top < self.threshold, apps.index(UNKNOWN), best)
