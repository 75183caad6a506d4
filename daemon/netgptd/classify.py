"""Classification in the pipeline: flows to the model in batches, verdicts and alerts out.

A flow is classified early, as soon as its first-packet buffer holds the
packets the model reads, or at its end if it never got that far. Ended
flows wait for their verdict (a flow record always carries it), batched
with the early ones so the model sees full batches.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from netgptd.eve import alert_event, flow_event
from netgptd.flow.table import Flow

BENIGN = "benign"
# How bad each attack class is, as Suricata's severity (1 = most severe).
SEVERITY = {"dos": 1, "bruteforce": 1, "webattack": 1, "scan": 2, "tunnel": 2, "mining": 2}


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
        todo = [f for f in self._early if f.verdict is None]
        todo += [f for f in self._ended if f.verdict is None and f.first_packets]
        for flow, verdict in zip(todo, self.classifier.verdicts(todo)):
            flow.verdict = verdict
            self.classified += 1
            self._maybe_alert(flow, verdict, flow.last_ns)
        self._early.clear()
        ended, self._ended = self._ended, []
        for flow in ended:
            self.emit(flow_event(flow))

    def _maybe_alert(self, flow: Flow, verdict: dict[str, Any], ts_ns: int) -> None:
        attack = verdict.get("attack")
        confidence = verdict.get("attack_confidence") or 0.0
        if attack in (None, BENIGN) or confidence < self.alert_confidence:
            return
        self.alerts += 1
        signature = f"NetGPT {attack} detected ({verdict.get('app')})"
        self.emit(alert_event(flow, ts_ns, signature, attack, SEVERITY.get(attack, 3), confidence, "model"))
