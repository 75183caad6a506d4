"""A fleet's alerts reach the central tier across an outage of the central broker (tests/fleet.py).

Real parts only: two site mosquitto brokers bridged (TLS, client certificates)
to a central mosquitto, all three from the shipped ``deploy/mosquitto``
configurations; four ``netgptd run`` sensors (two per site) and a fifth,
slower one, replaying the mining capture (model alerts all along); a
persistent collector at the centre. Mid-run the central broker stops for
5 s (``bench/fleet_outage.py`` runs the same with 30 s and prints the
table). Every alert each sensor wrote to EVE must arrive centrally;
duplicates (QoS 1 is at least once) are counted and bounded by what can
be in flight on the links that dropped. Every sensor's retained status is
at the centre, survives the central restart, and the will of the sensor
killed with SIGKILL turns it ``offline`` there.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fleet import outage_run
from test_daemon import MINING

pytestmark = [pytest.mark.slow, pytest.mark.corpus, pytest.mark.timeout(240)]

SITES = {"north": ["n1", "n2"], "south": ["s1", "s2"]}
OUTAGE_S = 5.0
# QoS 1 resends what was in flight, unacknowledged, when a link dropped: mosquitto's max_inflight_messages
# (20, the default) on each link the outage cut: every site's bridge to the centre, the centre to the collector.
INFLIGHT = 20
MAX_DUPLICATES = INFLIGHT * (len(SITES) + 1)


def test_every_alert_of_every_sensor_reaches_the_centre_across_an_outage(corpus: Path, tmp_path: Path) -> None:
    run = outage_run(tmp_path, corpus / MINING, SITES, speed=1.0, outage=OUTAGE_S)

    assert run.outage_s >= OUTAGE_S
    sensors = {f"{d.site}/{d.sensor}" for d in run.deliveries}
    assert sensors == {f"{site}/{name}" for site, names in SITES.items() for name in names}
    for delivery in run.deliveries:
        key = f"{delivery.site}/{delivery.sensor}"
        assert run.written_during_outage[key] > 0, f"{key} wrote no alert while the centre was down: nothing tested"
        assert (delivery.delivered, delivery.strays) == (delivery.written, 0), delivery
    assert sum(d.duplicates for d in run.deliveries) <= MAX_DUPLICATES, run.deliveries

    everyone = sensors | {run.killed}
    assert run.retained_online == dict.fromkeys(everyone, b"online")
    assert run.retained_after_outage == dict.fromkeys(everyone, b"online"), "the central broker kept them"
    assert run.killed_status == -signal.SIGKILL
    assert run.retained_at_end == dict.fromkeys(everyone, b"offline"), "closed, or the killed sensor's will"
    assert run.bridge_states == dict.fromkeys(SITES, b"1")
