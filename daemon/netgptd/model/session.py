"""Serving NetGPT: an onnxruntime session over a bundle, and flow verdicts.

onnxruntime and numpy only, never torch, so the daemon stays small. The
session asks for the preferred execution providers that this onnxruntime
build has (CUDA, then CPU, by default) and reports the one it actually got:
onnxruntime falls back to CPU quietly when CUDA cannot start.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Hashable, Protocol, Sequence

import numpy as np
import onnxruntime as ort
import structlog

from netgptd.model.bundle import INPUTS, OUTPUTS, Bundle, BundleError
from netgptd.model.tokenizer import encode_flow, pad_batch

log = structlog.get_logger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def open_session(model: bytes, options: ort.SessionOptions, providers: Sequence[str], bundle: Bundle,
                 file: Path) -> ort.InferenceSession:  # fmt: skip
    """onnxruntime's session over ``model`` (the bytes of ``file``); a file it cannot load (its sha256
    matching the manifest or not) is a ``BundleError`` naming the file, not onnxruntime's own exception."""
    try:
        return ort.InferenceSession(model, sess_options=options, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 -- onnxruntime's errors share no base class but Exception
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{file.name} in {bundle.path}: onnxruntime cannot load it: {reason}") from None


class ModelSession:
    """One bundle's model, ready to classify token rows."""

    def __init__(self, bundle: Bundle, prefer: Sequence[str] = (CUDA, CPU), threads: int = 1,
                 memory_arena: bool = True) -> None:  # fmt: skip
        self.bundle = bundle
        self.requested = tuple(prefer)
        available = ort.get_available_providers()
        offered = [p for p in self.requested if p in available]
        if CUDA in offered and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu finds CUDA and cuDNN from the nvidia-* wheels (the gpu extra) only when asked to.
            ort.preload_dlls()
        if not offered:
            raise ValueError(f"none of the execution providers {', '.join(self.requested)} is in this onnxruntime "
                             f"(it has {', '.join(available)})")  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = memory_arena
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = open_session(bundle.model_bytes(), options, offered, bundle, bundle.model_file)
        self._check_outputs()
        self.provider = self.session.get_providers()[0]
        log.info("model_loaded", name=bundle.model_id, provider=self.provider, requested=list(self.requested))
        if CUDA in offered and self.provider != CUDA:
            log.warning("model_provider_fallback", name=bundle.model_id, provider=self.provider, wanted=CUDA,
                        reason="CUDA is in this onnxruntime but the session did not start on it")  # fmt: skip

    def _check_outputs(self) -> None:
        """The heads' widths must match the manifest's labels, or verdicts would name the wrong classes."""
        widths = {o.name: o.shape[-1] for o in self.session.get_outputs()}
        for name, labels in zip(OUTPUTS, (self.bundle.apps, self.bundle.attacks)):
            if widths.get(name) != len(labels):
                raise BundleError(f"{self.bundle.model_file.name} in {self.bundle.path}: output {name} has width "
                                  f"{widths.get(name)}, its manifest names {len(labels)} labels")  # fmt: skip

    def classify(self, token_rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Softmax probabilities of the application and attack heads, one row per input."""
        if not token_rows:
            return np.zeros((0, len(self.bundle.apps)), np.float32), np.zeros((0, len(self.bundle.attacks)), np.float32)
        padded, lengths = pad_batch(token_rows)
        ids = np.asarray(padded, dtype=np.int64)
        mask = (np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        app_logits, attack_logits = self.session.run(list(OUTPUTS), {INPUTS[0]: ids, INPUTS[1]: mask})
        return softmax(app_logits), softmax(attack_logits)


class ClassifiableFlow(Protocol):
    """What verdicts need of a flow (``netgptd.flow.table.Flow`` has it).

    ``first_packets`` is (timestamp ns, to server?, bytes from the IP header
    on); ``server_ip`` and ``proto`` key the verdict cache.
    """

    first_packets: list[tuple[int, bool, bytes]] | None
    server_ip: bytes
    server_port: int
    proto: int


def _confidence(p: np.ndarray, chosen: int) -> float:
    """The chosen class's probability; where a threshold overruled the likeliest
    class, the probability that the likeliest one is wrong."""
    top = int(p.argmax())
    return round(float(p[chosen] if chosen == top else 1.0 - p[top]), 4)


class Classifier:
    """Verdicts for flows, in batches, with an optional cache by server side.

    The cache (LRU, ``cache_size`` entries, 0 = off) reuses the verdict of
    an earlier flow to the same server address, port and protocol: much
    less inference on busy services, at the price of missing a change in
    what one server side carries.

    The server port enters twice, where the bundle was trained with it: as
    the model's ``[PORT]`` tokens and through the bundle's port prior.
    ``port_blind`` serves without either (zeros for the port, no prior), for
    a network whose services run on unusual ports.
    """

    def __init__(self, session: ModelSession, batch: int = 64, cache_size: int = 0, port_blind: bool = False) -> None:
        self.session = session
        self.batch = batch
        self.cache_size = cache_size
        bundle = session.bundle
        self.tokenizer = replace(bundle.tokenizer, server_port=False) if port_blind else bundle.tokenizer
        self.port_prior = bundle.port_prior if self.tokenizer.server_port else None
        self._cache: OrderedDict[Hashable, dict[str, object]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def verdicts(self, flows: Sequence[ClassifiableFlow]) -> list[dict[str, object]]:
        """One verdict per flow, in order:
        ``{"app", "app_confidence", "attack", "attack_confidence", "model"}``."""
        results: list[dict[str, object]] = [{} for _ in flows]
        pending: dict[Hashable, list[int]] = {}  # one inference each, shared by the flows listed
        for i, flow in enumerate(flows):
            key: Hashable = i
            if self.cache_size:
                key = (flow.server_ip, flow.server_port, flow.proto)
                if key in self._cache:
                    self._cache.move_to_end(key)
                    self.cache_hits += 1
                    results[i] = dict(self._cache[key])
                    continue
                if key in pending:
                    self.cache_hits += 1
                else:
                    self.cache_misses += 1
            pending.setdefault(key, []).append(i)
        keys = list(pending)
        for start in range(0, len(keys), self.batch):
            chunk = keys[start : start + self.batch]
            firsts = [flows[pending[k][0]] for k in chunk]
            apps, attacks = self.session.classify([self.tokens(flow) for flow in firsts])
            if self.port_prior is not None:
                apps = self.port_prior.apply(apps, [(flow.proto, flow.server_port) for flow in firsts])
            for key, app_p, attack_p in zip(chunk, apps, attacks):
                verdict = self.verdict(app_p, attack_p)
                for i in pending[key]:
                    results[i] = dict(verdict)
                if self.cache_size:
                    self._remember(key, verdict)
        return results

    def tokens(self, flow: ClassifiableFlow) -> list[int]:
        """What the model reads of ``flow`` (also what central inference sends)."""
        packets = [(toserver, data) for _, toserver, data in flow.first_packets or ()]
        return encode_flow(packets, flow.server_port, self.tokenizer)

    def verdict(self, app_p: np.ndarray, attack_p: np.ndarray, model: str = "") -> dict[str, object]:
        """The verdict of one flow's probabilities, naming ``model`` (default: this bundle)."""
        bundle = self.session.bundle
        thresholds = bundle.thresholds
        app = int(thresholds.apps(app_p[None, :], bundle.apps)[0])
        attack = int(thresholds.attacks(attack_p[None, :], bundle.attacks)[0])
        return {
            "app": bundle.apps[app],
            "app_confidence": _confidence(app_p, app),
            "attack": bundle.attacks[attack],
            "attack_confidence": _confidence(attack_p, attack),
            "model": model or bundle.model_id,
        }

    def _remember(self, key: Hashable, verdict: dict[str, object]) -> None:
        self._cache[key] = verdict
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
