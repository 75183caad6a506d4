"""Central inference: the flows the sensor's own model is unsure of go to a Triton (KServe v2) service.

``CentralClassifier`` wraps the local ``Classifier``: every flow gets its
local verdict first; those whose application or attack confidence is below
``below`` are sent, in one request per batch, to the central service
(:mod:`netgptd.model.triton_serve`, whose dynamic batcher merges the
requests of many sensors), and the central verdicts replace theirs (their
``model`` says ``<central model>@central``). The local verdicts stand when
the service is away, slow (``timeout_s``) or answers with an error: the
flows go on at once, and the service is not asked again for
``retry_after_s`` seconds, so an absent service costs one failed attempt
per ``retry_after_s``, never a stall. Each change between reachable and not
is logged once (``central_inference_away``, ``central_inference_back``).
:meth:`CentralClassifier.stats` (in the sensor's ``stats`` events, under
``central``) counts the flows and times the requests as the sensor sees
them, failed ones included (p50/p99 over the last ``LATENCY_WINDOW``).

It runs in the pipeline's one model thread: the HTTP client (tritonclient,
on gevent) is made there, at the first call, and used from there only.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np
import structlog

from netgptd.model.bundle import INPUTS, OUTPUTS
from netgptd.model.session import Classifier, ClassifiableFlow, softmax
from netgptd.model.tokenizer import pad_batch

log = structlog.get_logger(__name__)

LATENCY_WINDOW = 1000  # requests the latency percentiles are taken over


def tritonclient_http() -> Any:
    """tritonclient's HTTP module; ValueError saying how to install it."""
    try:
        import tritonclient.http as http
    except ImportError:
        raise ValueError("central_url: needs tritonclient (pip install 'tritonclient[http]', or netgptd's "
                         "'central' extra)") from None  # fmt: skip
    return http


class CentralClassifier:
    def __init__(self, local: Classifier, url: str, model: str, below: float, timeout_s: float, retry_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.http = tritonclient_http()
        self.local, self.url, self.model = local, url.removeprefix("http://"), model
        self.below, self.timeout_s, self.retry_after_s, self.clock = below, timeout_s, retry_after_s, clock
        self.width = local.tokenizer.max_tokens
        self.counts = {"sent": 0, "answered": 0, "failed": 0, "skipped": 0, "requests": 0}
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._client: Any = None
        self._retry_at = 0.0
        self._away = False

    def verdicts(self, flows: Sequence[ClassifiableFlow]) -> list[dict[str, object]]:
        results = self.local.verdicts(flows)
        unsure = [i for i, v in enumerate(results) if self._unsure(v)]
        if not unsure:
            return results
        if self.clock() < self._retry_at:
            self.counts["skipped"] += len(unsure)
            return results
        self.counts["sent"] += len(unsure)
        self.counts["requests"] += 1
        started = self.clock()
        try:
            apps, attacks = self._remote([flows[i] for i in unsure])
        except Exception as exc:  # noqa: BLE001 -- tritonclient, gevent and socket errors share no base class
            self.counts["failed"] += len(unsure)
            self._retry_at = self.clock() + self.retry_after_s
            self._client = None  # a fresh connection next time
            if not self._away:
                log.warning("central_inference_away", url=self.url, error=f"{type(exc).__name__}: {exc}"[:300],
                            retry_in=self.retry_after_s, detail="local verdicts stand")  # fmt: skip
            self._away = True
            return results
        finally:
            self.latencies_s.append(self.clock() - started)
        if self._away:
            log.info("central_inference_back", url=self.url)
            self._away = False
        self.counts["answered"] += len(unsure)
        for i, app_p, attack_p in zip(unsure, apps, attacks):
            results[i] = self.local.verdict(app_p, attack_p, model=f"{self.model}@central")
        return results

    def stats(self) -> dict[str, object]:
        """The flow counts, and the requests' latency (ms) as this sensor sees it: p50 and p99 of the last ones."""
        recent = np.array(list(self.latencies_s)) * 1000  # list(): one step, while the model thread appends
        latency = {"p50": round(float(np.percentile(recent, 50)), 3), "p99": round(float(np.percentile(recent, 99)), 3),
                   "of": len(recent)} if len(recent) else {"of": 0}  # fmt: skip
        return dict(self.counts) | {"latency_ms": latency}

    def _unsure(self, verdict: dict[str, object]) -> bool:
        confidences = (verdict["app_confidence"], verdict["attack_confidence"])
        return min(float(c) for c in confidences if isinstance(c, (int, float))) < self.below

    def _remote(self, flows: list[ClassifiableFlow]) -> tuple[np.ndarray, np.ndarray]:
        """Application and attack probabilities of ``flows`` from the central model."""
        if self._client is None:
            self._client = self.http.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                           network_timeout=self.timeout_s)  # fmt: skip
        rows, lengths = pad_batch([self.local.tokens(flow) for flow in flows], self.width)
        ids = np.asarray(rows, dtype=np.int64)
        mask = (np.arange(self.width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        inputs = []
        for name, array in zip(INPUTS, (ids, mask)):
            tensor = self.http.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        outputs = [self.http.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
        answer = self._client.infer(self.model, inputs, outputs=outputs, timeout=int(self.timeout_s * 1e6))
        apps, attacks = softmax(answer.as_numpy(OUTPUTS[0])), softmax(answer.as_numpy(OUTPUTS[1]))
        if apps.shape != (len(flows), len(self.local.session.bundle.apps)) or \
                attacks.shape != (len(flows), len(self.local.session.bundle.attacks)):  # fmt: skip
            raise ValueError(f"the central model {self.model} answers shapes {apps.shape} and {attacks.shape}: "
                             "not this bundle's labels")  # fmt: skip
        if self.local.port_prior is not None:
            apps = self.local.port_prior.apply(apps, [(flow.proto, flow.server_port) for flow in flows])
        return apps, attacks
