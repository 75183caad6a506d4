"""Central inference's counts and request latency, against a real closed port (no Triton needed).

The shipped bundle classifies locally; ``central_below = 1.0`` sends every
flow to ``127.0.0.1:<a free port>``, where nothing listens: the connection
is refused, the local verdicts stand, and the request is counted and timed.
Within ``retry_after_s`` the service is not asked (no request, no latency
sample); after it, it is asked again.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from broker import free_port
from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle
from netgptd.model.central import CentralClassifier
from netgptd.model.session import Classifier, ModelSession


def test_requests_are_counted_and_timed_failed_ones_included() -> None:
    local = Classifier(ModelSession(load_bundle(DEFAULT_BUNDLE), prefer=("CPUExecutionProvider",)))
    later = [0.0]  # seconds added to the clock: past the retry window without waiting for it
    central = CentralClassifier(local, f"http://127.0.0.1:{free_port()}", "netgpt-small-0.1.0", below=1.0,
                                timeout_s=2.0, retry_after_s=60, clock=lambda: time.monotonic() + later[0])  # fmt: skip
    assert central.stats() == {"sent": 0, "answered": 0, "failed": 0, "skipped": 0, "requests": 0,
                               "latency_ms": {"of": 0}}  # fmt: skip
    flows = [SimpleNamespace(first_packets=[(0, True, b"\x16\x03\x01" * 10), (1, False, b"\x16\x03\x03" * 10)],
                             server_ip=bytes([10, 0, 0, n]), server_port=443, proto=6) for n in (1, 2)]  # fmt: skip
    assert central.verdicts(flows) == local.verdicts(flows)
    central.verdicts(flows)  # within the retry window: not asked
    stats = central.stats()
    assert {k: stats[k] for k in ("sent", "failed", "skipped", "requests")} == \
        {"sent": 2, "failed": 2, "skipped": 2, "requests": 1}  # fmt: skip
    latency = stats["latency_ms"]
    assert isinstance(latency, dict) and latency["of"] == 1 and 0 < latency["p50"] == latency["p99"] < 2000, latency
    later[0] = 61.0
    central.verdicts(flows)
    assert central.stats()["requests"] == 2 and central.stats()["latency_ms"]["of"] == 2  # type: ignore[index]
