"""The baselines NetGPT must beat on the same split: a port lookup and a
raw-byte logistic regression. numpy only (no torch, no scipy).

Both are fitted on the training flows with string targets (an application,
or an attack class), so the same classes serve apps and attacks.

- ``PortLookup``: the majority label of each (transport protocol, server
  port) in the training flows; an unseen pair gets the overall majority.
- ``ByteLogReg``: multinomial logistic regression on the first packets'
  bytes from the IP header on, anonymised exactly as the model's tokenizer
  does (``netgptd.model.tokenizer.anonymise``: addresses, ports, IP ID,
  TTL, checksums and sequence numbers left out), plus each packet's
  direction; standardised features, L2, class weights as in fine-tuning
  (inverse square-root frequency), fitted by L-BFGS from a seeded start.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

from netgptd.model.tokenizer import anonymise
from netgptd.train.dataset import FlowExample


def _majority(labels: Counter[str]) -> str:
    """The most frequent label; ties go to the first name in sort order."""
    return min(labels.items(), key=lambda item: (-item[1], item[0]))[0]


class PortLookup:
    """Majority label per (proto, server port) of the training flows."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, int], str] = {}
        self.fallback = ""

    def fit(self, examples: Sequence[FlowExample], labels: Sequence[str]) -> PortLookup:
        if len(examples) != len(labels) or not examples:
            raise ValueError("need as many labels as examples, and at least one")
        by_key: dict[tuple[int, int], Counter[str]] = {}
        for e, label in zip(examples, labels):
            by_key.setdefault((e.proto, e.server_port), Counter())[label] += 1
        self.table = {key: _majority(counts) for key, counts in by_key.items()}
        self.fallback = _majority(Counter(labels))
        return self

    def predict(self, examples: Sequence[FlowExample]) -> list[str]:
        return [self.table.get((e.proto, e.server_port), self.fallback) for e in examples]


# -- raw bytes -----------------------------------------------------------------------

PACKETS = 3
BYTES = 64


def anonymised_bytes(l3: bytes) -> bytes:
    """A packet from its IP header on, identifying fields left out (as the tokenizer sees it)."""
    fields, payload = anonymise(l3)
    return b"".join(fields) + payload


def byte_features(examples: Sequence[FlowExample], packets: int = PACKETS, width: int = BYTES) -> np.ndarray:
    """One row per flow: ``packets`` × (``width`` bytes / 255, zero-padded) and
    then each packet's direction (+1 to the server, -1 to the client, 0 absent)."""
    x = np.zeros((len(examples), packets * width + packets), dtype=np.float64)
    for row, e in enumerate(examples):
        for i, (toserver, l3) in enumerate(e.packets[:packets]):
            data = anonymised_bytes(l3)[:width]
            x[row, i * width : i * width + len(data)] = np.frombuffer(data, dtype=np.uint8)
            x[row, packets * width + i] = 1.0 if toserver else -1.0
    x[:, : packets * width] /= 255.0
    return x


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def _lbfgs(f: Objective, w0: np.ndarray, iterations: int, memory: int = 10, tolerance: float = 1e-6) -> np.ndarray:
    """Minimise a smooth convex ``f(w) -> (value, gradient)`` by L-BFGS with
    a backtracking (Armijo) line search."""
    w = w0
    value, grad = f(w)
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    for _ in range(iterations):
        if float(np.linalg.norm(grad)) <= tolerance * max(1.0, float(np.linalg.norm(w))):
            break
        # Two-loop recursion: the quasi-Newton direction.
        q = grad.copy()
        alphas = []
        for s, y in reversed(list(zip(s_list, y_list))):
            a = (s @ q) / (y @ s)
            alphas.append(a)
            q -= a * y
        if s_list:
            q *= (s_list[-1] @ y_list[-1]) / (y_list[-1] @ y_list[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(grad)))
        for (s, y), a in zip(zip(s_list, y_list), reversed(alphas)):
            q += s * (a - (y @ q) / (y @ s))
        direction = -q
        slope = grad @ direction
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_list.clear()
            y_list.clear()
            direction, slope = -grad, -(grad @ grad)
        step = 1.0
        while True:
            w_new = w + step * direction
            value_new, grad_new = f(w_new)
            if value_new <= value + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, y = w_new - w, grad_new - grad
        if y @ s > 1e-12:
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        converged = abs(value - value_new) <= 1e-10 * max(1.0, abs(value))
        w, value, grad = w_new, value_new, grad_new
        if converged:
            break
    return w


class ByteLogReg:
    """Multinomial logistic regression on anonymised first-packet bytes."""

    def __init__(self, l2: float = 1e-3, iterations: int = 300, seed: int = 0, class_weighting: bool = True) -> None:
        self.l2 = l2
        self.iterations = iterations
        self.seed = seed
        self.class_weighting = class_weighting
        self.classes: list[str] = []
        self.mean: np.ndarray = np.zeros(0)
        self.scale: np.ndarray = np.zeros(0)
        self.weights: np.ndarray = np.zeros((0, 0))
        self.bias: np.ndarray = np.zeros(0)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def fit(self, examples: Sequence[FlowExample], labels: Sequence[str]) -> ByteLogReg:
        if len(examples) != len(labels) or not examples:
            raise ValueError("need as many labels as examples, and at least one")
        x = byte_features(examples)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-12, std, 1.0)
        x = self._standardise(x)
        self.classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[label] for label in labels])
        n, d, k = len(y), x.shape[1], len(self.classes)
        counts = np.bincount(y, minlength=k).astype(np.float64)
        if self.class_weighting:
            per_class = 1.0 / np.sqrt(counts)
            per_class /= per_class.mean()
        else:
            per_class = np.ones(k)
        sample = per_class[y] / per_class[y].sum()  # weights of the flows, summing to 1
        onehot = np.zeros((n, k))
        onehot[np.arange(n), y] = 1.0
        l2 = self.l2

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            weights, bias = w[: d * k].reshape(d, k), w[d * k :]
            logits = x @ weights + bias
            logits -= logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
            log_p = logits - log_norm
            loss = -(sample * (log_p * onehot).sum(axis=1)).sum() + 0.5 * l2 * (weights * weights).sum()
            delta = (np.exp(log_p) - onehot) * sample[:, None]
            grad_w = x.T @ delta + l2 * weights
            return float(loss), np.concatenate([grad_w.ravel(), delta.sum(axis=0)])

        rng = np.random.default_rng(self.seed)
        w0 = np.concatenate([rng.normal(0.0, 0.01, d * k), np.log(counts / n)])
        w = _lbfgs(objective, w0, self.iterations)
        self.weights, self.bias = w[: d * k].reshape(d, k), w[d * k :]
        return self

    def probabilities(self, examples: Sequence[FlowExample]) -> np.ndarray:
        logits = self._standardise(byte_features(examples)) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, examples: Sequence[FlowExample]) -> list[str]:
        if not examples:
            return []
        return [self.classes[i] for i in self.probabilities(examples).argmax(axis=1)]
