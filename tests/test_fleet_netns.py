"""The fleet with each sensor in its own network namespace (tests/fleet_netns.py; bench/fleet_netns.py prints the table).

Four sensors with the rollout plugin at two sites and one control sensor
without it (the bench: ten and one), each in its own namespace; site brokers bridged to the central
one; a Prometheus per site federated centrally. A signed release rolls out
to every rollout sensor mid-capture, then the central broker stops for
5 s (the bench: 30 s). Every alert of every sensor arrives centrally,
duplicates bounded by what QoS 1 may resend (mosquitto's 20 in flight on
each link the outage cut); every sensor is at the central Prometheus, with
its alert count and, for the rollout sensors, the new model version; the
rollout sensors' flows (some classified by each version) number as many as
the control's. Where ``.venv-triton`` is (setup.sh), the central inference
service runs too and every sensor gets verdicts from it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fleet import quiet_then
from fleet_netns import CONTROL, RELEASE, held_open, netns_run
from test_central_inference import TRITON_PYTHON
from test_daemon import MINING

pytestmark = [pytest.mark.slow, pytest.mark.corpus, pytest.mark.timeout(300)]

SITES = {"north": ["n1", "n2"], "south": ["s1", "s2"]}  # and the control: 5 sensors (the bench: 11)
SPEED = 0.5  # the capture's 18 s of traffic over the staggered start-up, the rollout and the outage
MINING_PACKETS = 7163
OUTAGE_S = 5.0
LEAD_S = 10.0
INFLIGHT = 20  # mosquitto's max_inflight_messages per link; links the outage cut: the bridges, the collector's
MAX_DUPLICATES = INFLIGHT * (len(SITES) + 1)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and ip")
def test_every_sensor_in_its_namespace_reaches_the_centre_and_serves_the_rollout(corpus: Path, tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    lead = quiet_then(corpus / MINING, LEAD_S, tmp_path / "lead.pcapng")
    capture = held_open(lead, MINING_PACKETS + 1, tmp_path / "mining.pcapng")
    triton = TRITON_PYTHON if TRITON_PYTHON.exists() else None  # setup.sh test makes it
    run = netns_run(tmp_path, capture, MINING_PACKETS + 1, SITES, SPEED, OUTAGE_S, triton_python=triton)

    keys = [f"{d.site}/{d.sensor}" for d in run.deliveries]
    control = f"north/{CONTROL}"
    rolling = [k for k in keys if k != control]
    assert len(keys) == 5 and control in keys
    for d in run.deliveries:
        assert (d.delivered, d.strays) == (d.written, 0) and d.written > 0, d
    assert sum(d.duplicates for d in run.deliveries) <= MAX_DUPLICATES, run.deliveries
    assert all(run.written_during_outage[k] > 0 for k in keys), run.written_during_outage
    assert run.central_up == dict.fromkeys(keys, 1.0)
    assert run.central_alerts == {k: float(n) for k, n in run.eve_alerts_then.items()}
    assert run.central_model == {k: "0.1.0" if k == control else RELEASE for k in keys}
    for k in rolling:
        assert run.reports[k]["serving"]["version"] == RELEASE, k
        assert run.flows[k] == run.flows[control], (k, run.flows[k], run.flows[control])
        assert set(run.flows_by_version[k]) == {"0.1.0", RELEASE}, (k, run.flows_by_version[k])
    assert run.exit_codes == dict.fromkeys(keys, 0)
    if triton:
        assert all(run.central_verdicts[k] > 0 for k in keys), run.central_verdicts
