"""The server-port prior: fitted on training flows, combined with the model's probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netgptd.model.port_prior import PortPrior

APPS = ("DNS", "TLS", "unknown")
UDP, TCP = 17, 6


def flows() -> list[tuple[tuple[int, int], str, str]]:
    """DNS on udp/53 in three captures, TLS on tcp/443 in four, and a peer's
    random port (tcp/51413) that only one capture used."""
    return (
        [((UDP, 53), f"dns{i}.pcap", "DNS") for i in range(3) for _ in range(10)]
        + [((TCP, 443), f"web{i}.pcap", "TLS") for i in range(4) for _ in range(10)]
        + [((TCP, 51413), "p2p.pcap", "unknown")] * 40
    )


def test_only_ports_from_enough_captures_enter_the_table() -> None:
    prior = PortPrior.fit(flows(), APPS)
    assert set(prior.counts) == {(UDP, 53), (TCP, 443)}
    assert prior.counts[(UDP, 53)].tolist() == [30, 0, 0]
    assert set(PortPrior.fit(flows(), APPS, min_captures=1).counts) == {(UDP, 53), (TCP, 443), (TCP, 51413)}
    # The class prior counts every training flow, with one pseudo-flow per app.
    assert prior.prior == pytest.approx(np.array([31, 41, 41]) / 113)


def test_an_unseen_port_leaves_the_model_alone() -> None:
    prior = PortPrior.fit(flows(), APPS)
    model = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    assert prior.ratio((TCP, 51413)).tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(prior.apply(model, [(TCP, 8080), (UDP, 443)]), model)


def test_a_well_known_port_outweighs_a_hesitant_model() -> None:
    prior = PortPrior.fit(flows(), APPS)
    hesitant = np.array([[0.4, 0.35, 0.25]])  # leans DNS, barely
    fused = prior.apply(hesitant, [(TCP, 443)])
    assert fused.argmax() == APPS.index("TLS") and fused.sum() == pytest.approx(1.0)
    # The port weighs as much as the flows it was seen in: seen in three, it does
    # not overrule a fairly sure model; seen in forty, it does.
    balanced = [((TCP, 443), f"{c}.pcap", "TLS") for c in "abc"]
    balanced += [((UDP, 53), f"d{i}.pcap", "DNS") for i in range(3)] + [((TCP, 9), f"u{i}.pcap", "unknown") for i in range(3)]
    few = PortPrior.fit(balanced, APPS)
    fairly_sure = np.array([[0.88, 0.08, 0.04]])
    assert few.apply(fairly_sure, [(TCP, 443)]).argmax() == APPS.index("DNS")
    assert prior.apply(fairly_sure, [(TCP, 443)]).argmax() == APPS.index("TLS")
    assert few.ratio((TCP, 443))[1] < prior.ratio((TCP, 443))[1]


def test_the_port_never_raises_an_app_the_bytes_contradict() -> None:
    """However many flows a port was seen in, an app the model gives under the
    floor (0.01) is not raised by it: the bytes say otherwise."""
    prior = PortPrior.fit(flows(), APPS)
    contradicted = np.array([[0.985, 0.005, 0.01]])  # the bytes say DNS, not TLS
    fused = prior.apply(contradicted, [(TCP, 443)])
    assert fused.argmax() == APPS.index("DNS") and fused[0, 1] <= 0.005 + 1e-9
    # Lowering stays allowed: on udp/53, TLS (0.3, above the floor) is pushed down.
    assert prior.apply(np.array([[0.6, 0.3, 0.1]]), [(UDP, 53)])[0, 1] < 0.3


def test_round_trip_through_json() -> None:
    prior = PortPrior.fit(flows(), APPS, alpha=2.0)
    back = PortPrior.from_dict(json.loads(json.dumps(prior.to_dict())), APPS)
    assert back.alpha == 2.0 and back.min_captures == 3 and back.floor == 0.01 and set(back.counts) == set(prior.counts)
    for key in [(UDP, 53), (TCP, 443), (TCP, 1)]:
        assert np.allclose(back.ratio(key), prior.ratio(key))
    assert prior.to_dict()["ports"] == {"17/53": {"DNS": 30}, "6/443": {"TLS": 40}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["ports"].update({"6/80": {"SMTP": 3}}), "'SMTP' is not one of the model's apps"),
        (lambda d: d["prior"].pop("DNS"), "must name exactly the model's apps"),
        (lambda d: d.update(alpha=0), "alpha must be above 0"),
        (lambda d: d["prior"].update(DNS=0), "prior must be above 0"),
        (lambda d: d.update(floor=1.5), r"floor must be in \[0, 1\)"),
    ],
)
def test_bad_tables_are_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    values = PortPrior.fit(flows(), APPS).to_dict()
    change(values)
    with pytest.raises(ValueError, match=message):
        PortPrior.from_dict(values, APPS)


def test_fit_and_apply_check_their_input() -> None:
    with pytest.raises(ValueError, match="at least one training flow"):
        PortPrior.fit([], APPS)
    with pytest.raises(ValueError, match="2 ports for 1 rows"):
        PortPrior.fit(flows(), APPS).apply(np.ones((1, 3)) / 3, [(TCP, 1), (TCP, 2)])
