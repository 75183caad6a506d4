"""The server-port prior: what the training flows say about each server port,
combined with the model's reading of the bytes.

A one-layer NetGPT uses its ``[PORT]`` tokens weakly, while a port lookup
alone is a strong baseline on real traffic; the two err on different flows.
Serving combines them as a product of experts (naive Bayes over the two
sources of evidence)::

    p(app | bytes, port) ∝ p_model(app | bytes, port) · p(app | port) / p(app)

with ``p(app | port) = (count(port, app) + alpha · p(app)) / (count(port) + alpha)``:
an unseen port leaves the model's verdict as it is, a port seen in a few
training flows nudges it, one seen in many weighs in strongly. Only ports
seen in at least ``min_captures`` training captures enter the table: a port
that one capture used (a peer's random port) is a property of that capture,
not of a service. Port-blind serving does without it.

The port never outweighs the bytes: an application the model gives less
than ``floor`` (1 %: the bytes contradict it) keeps the model's probability, and
the port only shares out the rest among the applications the bytes allow.
So a port that some training captures used for another protocol (UDP/443
for DNScrypt beside QUIC) cannot turn a flow whose bytes say QUIC into
DNScrypt.

numpy only: the table is fitted at training time and lives in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

PortKey = tuple[int, int]  # (IP protocol number, server port)


@dataclass(frozen=True)
class PortPrior:
    apps: tuple[str, ...]
    prior: np.ndarray  # p(app), one entry per app
    counts: dict[PortKey, np.ndarray]  # training flows per app, for ports seen in enough captures
    alpha: float = 1.0
    min_captures: int = 3
    floor: float = 0.01

    @classmethod
    def fit(cls, flows: Iterable[tuple[PortKey, str, str]], apps: Sequence[str], alpha: float = 1.0,
            min_captures: int = 3) -> PortPrior:  # fmt: skip
        """From training flows as ((proto, server port), capture, app); every app must be in ``apps``."""
        apps = tuple(apps)
        index = {a: i for i, a in enumerate(apps)}
        per_port: dict[PortKey, np.ndarray] = {}
        captures: dict[PortKey, set[str]] = {}
        total = np.zeros(len(apps))
        for key, capture, app in flows:
            per_port.setdefault(key, np.zeros(len(apps)))[index[app]] += 1
            captures.setdefault(key, set()).add(capture)
            total[index[app]] += 1
        if not total.sum():
            raise ValueError("a port prior needs at least one training flow")
        kept = {k: c for k, c in per_port.items() if len(captures[k]) >= min_captures}
        return cls(apps, _smoothed(total), kept, alpha, min_captures)

    def ratio(self, key: PortKey) -> np.ndarray:
        """``p(app | port) / p(app)`` for each app; all ones for a port not in the table."""
        counts = self.counts.get(key)
        if counts is None:
            return np.ones(len(self.apps))
        return (counts + self.alpha * self.prior) / (counts.sum() + self.alpha) / self.prior

    def apply(self, app_p: np.ndarray, keys: Sequence[PortKey]) -> np.ndarray:
        """The model's probabilities (one row per flow) times each flow's port
        ratio, renormalised among the apps at or above ``floor``; the others as they were."""
        if len(keys) != len(app_p):
            raise ValueError(f"{len(keys)} ports for {len(app_p)} rows of probabilities")
        if not len(keys):
            return app_p
        allowed = app_p >= self.floor
        weighted = np.where(allowed, app_p * np.stack([self.ratio(k) for k in keys]), 0.0)
        mass = np.where(allowed, app_p, 0.0).sum(axis=-1, keepdims=True)
        total = weighted.sum(axis=-1, keepdims=True)
        return np.where(allowed, weighted / np.where(total > 0, total, 1.0) * mass, app_p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the manifest's ``port_prior``): counts, sparse, by ``"proto/port"``."""
        return {
            "alpha": self.alpha,
            "min_captures": self.min_captures,
            "floor": self.floor,
            "prior": {a: float(p) for a, p in zip(self.apps, self.prior)},
            "ports": {f"{proto}/{port}": {a: int(n) for a, n in zip(self.apps, counts) if n}
                      for (proto, port), counts in sorted(self.counts.items())},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], apps: Sequence[str]) -> PortPrior:
        """Read back ``to_dict``; ``ValueError`` naming what is wrong."""
        apps = tuple(apps)
        index = {a: i for i, a in enumerate(apps)}
        prior = values["prior"]
        if set(prior) != set(apps):
            raise ValueError("its prior must name exactly the model's apps")
        counts = {}
        for key, per_app in values["ports"].items():
            proto, _, port = key.partition("/")
            row = np.zeros(len(apps))
            for app, n in per_app.items():
                if app not in index or n < 0:
                    raise ValueError(f"port {key}: {app!r} is not one of the model's apps, or its count is negative")
                row[index[app]] = n
            counts[(int(proto), int(port))] = row
        alpha = float(values["alpha"])
        if alpha <= 0:
            raise ValueError("alpha must be above 0")
        p = np.array([float(prior[a]) for a in apps])
        if not (p > 0).all():
            raise ValueError("every app's prior must be above 0")
        floor = float(values.get("floor", 0.0))  # bundles made before it let the port raise any app
        if not 0 <= floor < 1:
            raise ValueError("floor must be in [0, 1)")
        return cls(apps, p / p.sum(), counts, alpha, int(values["min_captures"]), floor)


def _smoothed(counts: np.ndarray) -> np.ndarray:
    """Class frequencies with one pseudo-flow each: no app has prior 0 (the ratio divides by it)."""
    counts = counts + 1.0
    return counts / counts.sum()
