"""How probabilities become verdicts: the open-set and attack thresholds.

Open set: the model has an ``unknown`` class, trained on flows nDPI could
not name and on applications too rare to learn; it still meets protocols
unlike any of those, and then spreads its belief over the named classes they
resemble (SSH read as HTTP, Kerberos as TLS). A flow whose likeliest named
class is below ``unknown_below`` (after the port prior) is served as
``unknown``.

Attacks: an attack class is the verdict only at ``attack_at`` or above,
else ``benign``: a sensor that flags a thousandth of ordinary flows buries
its operators, and the attack head, trained with attacks weighted up, is
surer of them than it should be.

Both are fitted at training on validation captures the model did not train
on (``train.calibration``) and live in the manifest. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNKNOWN = "unknown"
BENIGN = "benign"


def _top_or(p: np.ndarray, fallback: int, threshold: float) -> np.ndarray:
    best = p.argmax(axis=-1)
    if not threshold:
        return best
    top = np.take_along_axis(p, best[:, None], axis=-1)[:, 0]
    return np.where((top < threshold) & (best != fallback), fallback, best)


@dataclass(frozen=True)
class Thresholds:
    unknown_below: float = 0.0  # 0: never abstain (bundles made before it)
    attack_at: float = 0.0  # 0: the attack head's argmax

    def apps(self, app_p: np.ndarray, apps: Sequence[str]) -> np.ndarray:
        """Each row's application index: its argmax, or ``unknown``'s where that named class is unlikely."""
        if UNKNOWN not in apps:
            return app_p.argmax(axis=-1)
        return _top_or(app_p, list(apps).index(UNKNOWN), self.unknown_below)

    def attacks(self, attack_p: np.ndarray, attacks: Sequence[str]) -> np.ndarray:
        """Each row's attack index: its argmax, or ``benign``'s where that attack is not sure enough."""
        if BENIGN not in attacks:
            return attack_p.argmax(axis=-1)
        return _top_or(attack_p, list(attacks).index(BENIGN), self.attack_at)

    def to_dict(self) -> dict[str, float]:
        return {"unknown_below": self.unknown_below, "attack_at": self.attack_at}
