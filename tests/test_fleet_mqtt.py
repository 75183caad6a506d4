"""A fleet's alerts reach the central tier across an outage of the central broker (tests/fleet.py).

Real parts only: two site mosquitto brokers bridged (TLS, client certificates)
to a central mosquitto, all three from the shipped ``deploy/mosquitto``
configurations; four ``netgptd run`` sensors (two per site) and a fifth,
slower one, replaying the mining capture (model alerts, most in its first
seconds) after a few seconds of quiet, so that they come online first; a
persistent collector at the centre. Once all are online the central broker
stops for at least 5 s, and until every sensor has written alerts meanwhile
(``bench/fleet_outage.py`` runs the same with 30 s and prints the
table). Every alert each sensor wrote to EVE must arrive centrally;
duplicates (QoS 1 is at least once) are counted and bounded by what can
be in flight on the links that dropped. Every sensor's retained status is
at the centre, survives the central restart, and the will of the sensor
killed with SIGKILL turns it ``offline`` there.

The other way, and the central ACL: an operator's ask at the centre reaches
its own site's broker only, and a site bridge cannot write another site's
topics.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from broker import Subscriber
from fleet import COLLECTOR, brokers_of, outage_run, publish, quiet_then
from test_daemon import MINING

pytestmark = pytest.mark.timeout(240)

SITES = {"north": ["n1", "n2"], "south": ["s1", "s2"]}
OUTAGE_S = 5.0
LEAD_S = 8.0  # of quiet before the capture's traffic: the sensors start and come online meanwhile
# QoS 1 resends what was in flight, unacknowledged, when a link dropped: mosquitto's max_inflight_messages
# (20, the default) on each link the outage cut: every site's bridge to the centre, the centre to the collector.
INFLIGHT = 20
MAX_DUPLICATES = INFLIGHT * (len(SITES) + 1)


@pytest.mark.slow
@pytest.mark.corpus
def test_every_alert_of_every_sensor_reaches_the_centre_across_an_outage(corpus: Path, tmp_path: Path) -> None:
    capture = quiet_then(corpus / MINING, LEAD_S, tmp_path / "mining.pcapng")
    run = outage_run(tmp_path, capture, SITES, speed=1.0, outage=OUTAGE_S)

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


def test_an_ask_at_the_centre_reaches_its_site_only_and_a_site_writes_only_its_own_topics(tmp_path: Path) -> None:
    operator = "operator"  # a user of central.acl, as its certificate's name
    with brokers_of(tmp_path, ["north", "south"], users=(operator,)) as (pki, central, sites):
        with (Subscriber(sites["north"], "netgpt/+/+/ask") as north,
              Subscriber(sites["south"], "netgpt/+/+/ask") as south,
              Subscriber(central, "netgpt/+/+/alerts", tls=pki.client_tls(COLLECTOR)) as seen):
            publish(central, "netgpt/north/n1/ask", b"signed request", tls=pki.client_tls(operator))
            assert [(m.topic, m.payload) for m in north.wait_for(bool)] == [("netgpt/north/n1/ask", b"signed request")]

            # South's bridge is south at the centre: north's topics are not its to write (dropped, PUBACK anyway).
            publish(central, "netgpt/north/n1/alerts", b"forged", tls=pki.client_tls("south"))
            publish(central, "netgpt/south/s1/alerts", b"own", tls=pki.client_tls("south"))
            got = seen.wait_for(lambda m: any(r.payload == b"own" for r in m))
            assert [(m.topic, m.payload) for m in got] == [("netgpt/south/s1/alerts", b"own")]
            assert not south.messages, "an ask for north went to south"
