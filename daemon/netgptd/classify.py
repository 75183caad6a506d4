"""Classification in the pipeline: flows to the model in batches, verdicts and alerts out.

A flow is classified early, as soon as its first-packet buffer holds the
packets the model reads, or at its end if it never got that far. Ended
flows wait for their verdict (a flow record always carries it), batched
with the early ones so the model sees full batches.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from netgptd.eve import VERDICT_KEYS, alert_event, flow_event
from netgptd.flow.table import Flow
from netgptd.model.tokenizer import carries_payload
from netgptd.signatures import model_signature

BENIGN = "benign"


def model_alert(flow: Flow, verdict: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """The alert event for an attack verdict at or above ``threshold`` (marking the flow ``alerted``);
    None for benign or unsure."""
    attack = verdict.get("attack")
    confidence = verdict.get("attack_confidence") or 0.0
    if not isinstance(attack, str) or attack == BENIGN or confidence < threshold:
        return None
    flow.alerted = True
    ours = {"detector": "model", "confidence": round(confidence, 4), **{k: verdict.get(k) for k in VERDICT_KEYS}}
    return alert_event(flow, flow.last_ns, model_signature(attack), ours)


def classifiable(flow: Flow) -> bool:
    """Whether the model has something to read: buffered packets, one of them with payload."""
    return bool(flow.first_packets) and carries_payload(data for _, _, data in flow.first_packets)


class VerdictSource(Protocol):
    def verdicts(self, flows: Sequence[Flow]) -> list[dict[str, Any]]: ...


class ClassificationStage:
    def __init__(self, classifier: VerdictSource, emit: Callable[[dict[str, Any]], None],
                 batch_size: int = 256, alert_confidence: float = 0.9) -> None:  # fmt: skip
        self.classifier = classifier
        self.emit = emit
        self.batch_size = batch_size
        self.alert_confidence = alert_confidence
        self._early: list[Flow] = []
        self._ended: list[Flow] = []
        self.classified = 0
        self.alerts = 0

    def buffer_full(self, flow: Flow) -> None:
        """The flow table's hook: this flow has the packets the model reads."""
        self._early.append(flow)
        self._maybe_run()

    def ended(self, flows: Sequence[Flow]) -> None:
        self._ended.extend(flows)
        self._maybe_run()

    def _maybe_run(self) -> None:
        if len(self._early) + len(self._ended) >= self.batch_size:
            self.run()

    def run(self) -> None:
        """Classify everything waiting, then emit the ended flows' records."""
        # A flow can be in both lists (its buffer filled, then it ended before the batch ran): once.
        todo = list({f.flow_id: f for f in [*self._early, *self._ended] if f.verdict is None and classifiable(f)}.values())
        for flow, verdict in zip(todo, self.classifier.verdicts(todo)):
            flow.verdict = verdict
            self.classified += 1
            alert = model_alert(flow, verdict, self.alert_confidence)
            if alert is not None:
                self.alerts += 1
                self.emit(alert)
        self._early.clear()
        ended, self._ended = self._ended, []
        for flow in ended:
            self.emit(flow_event(flow))
