"""Community ID: our implementation against the spec's baselines and the reference package.

The reference is the ``communityid`` package (Corelight's own Python
implementation). Over the whole corpus, every flow's ``community_id`` in our
EVE output must equal what the package computes from that event's own fields.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import communityid
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from netgptd.flow.community_id import community_id
from netgptd.flow.config import FlowConfig
from netgptd.replay import replay

# IANA protocol keywords as our EVE prints them (Suricata's spelling); any
# other protocol is printed as its number.
PROTO_NUMBERS = {
    "ICMP": 1, "IGMP": 2, "TCP": 6, "UDP": 17, "IPv6": 41, "GRE": 47, "ESP": 50, "AH": 51,
    "IPv6-ICMP": 58, "OSPF": 89, "PIM": 103, "VRRP": 112, "SCTP": 132,
}  # fmt: skip
PORT_PROTOS = {6, 17, 132}
ICMP_PROTOS = {1, 58}

# From corelight/community-id-spec, baseline/baseline_deflt.json (seed 0) and
# baseline_seed1.json (seed 1): (proto, saddr, daddr, sport, dport, id seed 0, id seed 1).
SPEC_BASELINE = [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136,
     "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 135,
     "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0,
     "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
    (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4,
     "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    (58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134,
     "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
    (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133,
     "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0,
     "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8,
     "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0,
     "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7,
     "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
    (132, "192.168.170.56", "192.168.170.8", 7, 7,
     "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53,
     "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585,
     "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (46, "10.1.12.1", "10.1.12.2", None, None,  # RSVP: no ports
     "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    (46, "10.1.12.2", "10.1.12.1", None, None,
     "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
]  # fmt: skip

COLLECTIONS = ["ndpi", "mining", "ddos", "suricata-verify", "tcpdump"]


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def reference(proto: int, src: str, dst: str, sport: int | None, dport: int | None, seed: int = 0) -> str:
    tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
    value = communityid.CommunityID(seed=seed).calc(tpl)
    assert value is not None, f"communityid could not hash {tpl}"
    return value


# -- the function on its own ---------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", SPEC_BASELINE, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}")
def test_spec_baseline(case: tuple, seed: int) -> None:
    proto, src, dst, sport, dport, id0, id1 = case
    expected = id0 if seed == 0 else id1
    assert community_id(_packed(src), _packed(dst), proto, sport or 0, dport or 0, seed) == expected
    assert reference(proto, src, dst, sport, dport, seed) == expected  # the reference agrees


def test_seed_changes_the_id() -> None:
    src, dst = _packed("10.0.0.1"), _packed("10.0.0.2")
    ids = {community_id(src, dst, 6, 1234, 80, seed) for seed in (0, 1, 2, 0xFFFF)}
    assert len(ids) == 4


def test_direction_does_not_matter() -> None:
    a, b = _packed("2001:db8::1"), _packed("2001:db8::2")
    assert community_id(a, b, 17, 5353, 53, 7) == community_id(b, a, 17, 53, 5353, 7)
    # same address both ends: the ports decide the order
    assert community_id(a, a, 6, 80, 1234) == community_id(a, a, 6, 1234, 80)


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@st.composite
def _tuples(draw: st.DrawFn) -> tuple[int, str, str, int | None, int | None]:
    proto = draw(st.sampled_from([1, 6, 17, 58, 132, 47, 50, 89, 0, 255]))
    addresses = _ipv6 if proto == 58 else draw(st.sampled_from([_ipv4, _ipv6]))
    src = draw(addresses)
    dst = draw(st.one_of(addresses, st.just(src)))
    if proto in ICMP_PROTOS:
        # types with a request/response pair, and others
        sport = draw(st.one_of(st.sampled_from([0, 8, 13, 14, 128, 129, 133, 134, 135, 136, 3, 11]), st.integers(0, 255)))
        dport = draw(st.integers(0, 255))
    elif proto in PORT_PROTOS:
        sport, dport = draw(_port), draw(st.one_of(_port, st.just(0)))
    else:
        sport = dport = None
    return proto, src, dst, sport, dport


@settings(max_examples=400, deadline=None, database=None)
@given(_tuples(), st.integers(0, 0xFFFF))
def test_matches_reference_on_random_tuples(tpl: tuple, seed: int) -> None:
    proto, src, dst, sport, dport = tpl
    ours = community_id(_packed(src), _packed(dst), proto, sport or 0, dport or 0, seed)
    assert ours == reference(proto, src, dst, sport, dport, seed)


# -- every flow of the corpus --------------------------------------------------------


def _expected_for_event(event: dict, seed: int) -> str:
    name = event["proto"]
    proto = PROTO_NUMBERS.get(name, int(name) if name.isdigit() else None)
    assert proto is not None, f"unexpected proto name {name!r} in {event}"
    if proto in ICMP_PROTOS:
        sport, dport = event["icmp_type"], event["icmp_code"]
    elif proto in PORT_PROTOS:
        sport, dport = event["src_port"], event["dest_port"]
    else:
        sport = dport = None
    return reference(proto, event["src_ip"], event["dest_ip"], sport, dport, seed)


def _check_captures(captures: list[Path], seed: int = 0) -> tuple[Counter[str], list[str]]:
    """(flows checked by proto, mismatches) over the captures."""
    checked: Counter[str] = Counter()
    wrong: list[str] = []
    config = FlowConfig(community_id_seed=seed)
    for capture in captures:
        events: list[dict] = []
        with structlog.testing.capture_logs():
            replay([capture], events.append, flow_config=config)
        for event in events:
            if event["event_type"] != "flow":
                continue
            checked[event["proto"]] += 1
            expected = _expected_for_event(event, seed)
            if event["community_id"] != expected:
                wrong.append(f"{capture.name}: {event['proto']} {event['src_ip']} -> {event['dest_ip']} "
                             f"ours {event['community_id']} reference {expected}")  # fmt: skip
    return checked, wrong


_checked_by_collection: dict[str, Counter[str]] = {}


@pytest.mark.corpus
@pytest.mark.timeout(120)
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_corpus_flows_match_reference(corpus: Path, corpus_captures: list[Path], collection: str) -> None:
    folder = corpus / collection
    captures = [p for p in corpus_captures if folder in p.parents]
    if not captures:
        pytest.skip(f"no captures under {folder}")
    checked, wrong = _check_captures(captures)
    _checked_by_collection[collection] = checked
    assert sum(checked.values()) > 0, f"no flows at all in {collection}"
    assert not wrong, f"{len(wrong)} of {sum(checked.values())} flows differ, e.g.:\n" + "\n".join(wrong[:10])


@pytest.mark.corpus
@pytest.mark.timeout(120)
def test_corpus_covers_the_protocols(corpus: Path, corpus_captures: list[Path]) -> None:
    """The comparison above saw every kind of flow the hash treats differently."""
    for collection in COLLECTIONS:
        if collection not in _checked_by_collection:  # run on its own: count them here
            folder = corpus / collection
            _checked_by_collection[collection] = _check_captures([p for p in corpus_captures if folder in p.parents])[0]
    seen = sum(_checked_by_collection.values(), Counter())
    for proto in ("TCP", "UDP", "ICMP", "IPv6-ICMP", "SCTP"):
        assert seen[proto] > 0, f"no {proto} flow in the corpus comparison: {dict(seen)}"
    portless = {p for p in seen if PROTO_NUMBERS.get(p, int(p) if p.isdigit() else 0) not in PORT_PROTOS | ICMP_PROTOS}
    assert portless, f"no flow of a protocol without ports: {dict(seen)}"


@pytest.mark.corpus
@pytest.mark.timeout(120)
def test_corpus_flows_with_seed(corpus: Path, corpus_captures: list[Path]) -> None:
    """A non-zero seed reaches the EVE output (suricata-verify: many protocols, small files)."""
    captures = [p for p in corpus_captures if corpus / "suricata-verify" in p.parents]
    if not captures:
        pytest.skip("no suricata-verify captures")
    checked, wrong = _check_captures(captures, seed=0xBEEF)
    assert sum(checked.values()) > 100
    assert not wrong, f"{len(wrong)} of {sum(checked.values())} flows differ, e.g.:\n" + "\n".join(wrong[:10])
