"""Our TCP/UDP flows against nDPI's flow lists for the nDPI test captures.

``ndpi/labels/NAME.out`` is ndpiReader's output for ``ndpi/pcap/NAME``; its
flow lines look like::

    \t1\tTCP 192.168.2.126:45380 <-> 161.117.13.29:80 [proto: 7.295/HTTP.1kxun]...
    \t2\tUDP [fe80::1]:546 -> [ff02::1:2]:547 [proto: ...

Per capture, the set of unordered endpoint pairs (proto, {(ip, port), (ip,
port)}) must be the same, except for the captures in ACCEPTED_DIFFERENCES,
each with the reason it differs. Flow *counts* are not compared per capture:
we split a conversation on Suricata's idle timeouts and on TCP port reuse,
nDPI mostly does not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog

from netgptd.flow.config import FlowConfig, Timeouts
from netgptd.replay import replay
from netgptd.train.labels import ndpi_endpoint, ndpi_ip

pytestmark = pytest.mark.timeout(120)

# Every capture whose pair set differs from nDPI's, and why (each one looked
# at with tshark -V and with our decoder). Keep it short and honest: a capture
# that starts to match must be taken out (test_accepted_differences_still_differ).
ACCEPTED_DIFFERENCES: dict[str, str] = {
    "capwap_data.pcapng": (
        "nDPI decapsulates CAPWAP data (UDP 5247, 802.11 inside with a byte-swapped frame control) "
        "and reports the inner TCP flow; we do not decode CAPWAP and report the outer UDP flow"
    ),
    "fuzz-2006-06-26-2594.pcap": (
        "fuzzed: nDPI makes a port-0 TCP flow of a non-first IP fragment (frame 46; ours: unmatched "
        "fragment), reads 'ports' from inside an IPv4 header with IHL=1 (frame 303; ours: "
        "ipv4_bad_header_length) and drops packets whose IPv4 total length exceeds the captured "
        "bytes (frames 62, 65, 83, 474, 517), which we keep as cut by the snap length"
    ),
    "fuzz-2006-09-29-28586.pcap": (
        "fuzzed: nDPI keeps a TCP header whose data offset (40) runs past the 20 bytes left in the "
        "IP packet (frame 80; ours: tcp_truncated) and makes a port-0 flow of non-first IP "
        "fragments (frames 52, 130; ours: unmatched fragments)"
    ),
    "fuzz-2020-02-16-11740.pcap": (
        "fuzzed: frame 92's IPv4 total length (3041) exceeds its 225 captured bytes; nDPI drops the "
        "packet, we keep it as cut by the snap length, which makes one more RADIUS flow"
    ),
    "fuzz-2021-10-13.pcap": (
        "fuzzed: a pcap 2.0 header whose only record claims 524501 captured bytes in a 239-byte "
        "file (libpcap swaps caplen/len for pcap < 2.3, we do not: truncated, 0 records); its "
        "loopback family 0xcb65 is neither AF_INET nor AF_INET6 anyway, and nDPI's reader reads "
        "any non-AF_INET family as IPv6, making a TCP 'flow' out of garbage"
    ),
    "ip_fragmented_garbage.pcap": (
        "the first fragments hold only 16 bytes of TCP header (ours: tcp_truncated), so the 1248 "
        "later fragments match no flow; nDPI makes one port-0 TCP flow of them"
    ),
    "kerberos_fuzz.pcapng": (
        "fuzzed: TCP data offset 2 (8 bytes, below the minimum of 20); nDPI keeps the segment, "
        "we count tcp_bad_header_length"
    ),
}

# An accepted capture may differ by at most this many pairs (both directions
# together), so that a new regression inside an accepted capture still fails.
MAX_ACCEPTED_PAIRS = 8

# Summed over the corpus, our number of TCP/UDP flows (and of distinct
# endpoint pairs) must be within this share of nDPI's.
TOTAL_TOLERANCE = 0.05

LABEL_LINE = re.compile(r"^\s+\d+\s+(TCP|UDP) (\S+) (?:<->|->) (\S+) \[")

Endpoint = tuple[str, int]
Pair = tuple[str, Endpoint, Endpoint]


def _pair(proto: str, a: Endpoint, b: Endpoint) -> Pair:
    first, second = sorted((a, b))
    return proto, first, second


# ndpiReader reports each conversation of these captures once; our default
# Suricata idle timeouts split long, sparse conversations (SSDP, mDNS, NTP
# every minute) into several records. Counts are compared with idle and
# active timeouts out of the way, so both tools count conversations.
_NEVER = Timeouts(1e9, 1e9, 1e9, 1e9, 1e9, 1e9, active=0)
NDPI_LIKE = FlowConfig(timeouts={"default": _NEVER}, first_packets=0)


def ndpi_flows(label: Path) -> tuple[set[Pair], int]:
    """nDPI's TCP/UDP endpoint pairs and its number of flow lines."""
    pairs = set()
    lines = 0
    with open(label, encoding="latin-1") as f:  # fuzzed captures put raw bytes in the output
        for line in f:
            m = LABEL_LINE.match(line)
            if m:
                lines += 1
                pairs.add(_pair(m[1], ndpi_endpoint(m[2]), ndpi_endpoint(m[3])))
    return pairs, lines


def our_flows(capture: Path, config: FlowConfig | None = None) -> tuple[set[Pair], int]:
    """Our TCP/UDP endpoint pairs and number of TCP/UDP flow records."""
    pairs = set()
    records = 0

    def sink(event: dict) -> None:
        nonlocal records
        if event["event_type"] == "flow" and event["proto"] in ("TCP", "UDP"):
            records += 1
            pairs.add(_pair(
                event["proto"],
                (ndpi_ip(event["src_ip"]), event["src_port"]),
                (ndpi_ip(event["dest_ip"]), event["dest_port"]),
            ))  # fmt: skip

    with structlog.testing.capture_logs():  # truncated fuzz files warn; keep the output clean
        result = replay([capture], sink, flow_config=config)
    assert not result.failed_files, result.failed_files
    return pairs, records


_compared: dict[Path, tuple[set[Pair], set[Pair], int, int]] = {}


def compare(capture: Path) -> tuple[set[Pair], set[Pair], int, int]:
    """nDPI's pairs, ours (default settings), and both flow counts (ours
    with NDPI_LIKE timeouts), computed once per session."""
    if capture not in _compared:
        label = capture.parent.parent / "labels" / f"{capture.name}.out"
        assert label.is_file(), f"no nDPI label file {label} for {capture.name}"
        theirs, their_count = ndpi_flows(label)
        ours, _ = our_flows(capture)
        _, our_count = our_flows(capture, NDPI_LIKE)
        _compared[capture] = (theirs, ours, their_count, our_count)
    return _compared[capture]


def _show(pairs: set[Pair], limit: int = 6) -> str:
    shown = [f"{p} {a[0]}:{a[1]} <-> {b[0]}:{b[1]}" for p, a, b in sorted(pairs)[:limit]]
    more = f" (+{len(pairs) - limit} more)" if len(pairs) > limit else ""
    return "; ".join(shown) + more


# -- the address rendering -------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "ndpi"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2600:1901:0:7a0b::", "2600:1901::7a0b::"),  # seen in pinterest.pcap
        ("32fb:f967:681e:e96b:face:b00c:0:74fd", "32fb:f967:681e:e96b:face:b00c::74fd"),
        ("2001:b020:6:0:c2a0:bbff:fe73:eb57", "2001:b020:6::c2a0:bbff:fe73:eb57"),  # 1kxun.pcap
        ("3ffe:501:4819::42", "3ffe:501:4819::42"),
        ("ff02::1", "ff02::1"),
        ("::1", "::1"),
        ("::", "::"),
        ("1:0:0:2:0:0:0:3", "1::2::3"),
        ("0:1::", "::1::"),
        ("2001:DB8:0:0:8:800:200C:417A", "2001:db8::8:800:200c:417a"),
        ("2a01:cb01:2049:8b07:991d:ec85:28df:f629", "2a01:cb01:2049:8b07:991d:ec85:28df:f629"),
    ],
)
def test_ndpi_ip(ours: str, ndpi: str) -> None:
    assert ndpi_ip(ours) == ndpi


def test_label_line_parsing() -> None:
    v4 = "\t12\tTCP 192.168.2.126:45380 <-> 161.117.13.29:80 [proto: 7.295/HTTP.1kxun][IP: 0/Unknown]"
    v6 = "\t3\tUDP [2001:b020:6::c2a0:bbff:fe73:eb57]:62976 -> [ff02::1]:62976 [proto: 0/Unknown]"
    m4, m6 = LABEL_LINE.match(v4), LABEL_LINE.match(v6)
    assert m4 and m6
    assert _pair(m4[1], ndpi_endpoint(m4[2]), ndpi_endpoint(m4[3])) == (
        "TCP", ("161.117.13.29", 80), ("192.168.2.126", 45380))  # fmt: skip
    assert ndpi_endpoint(m6[2]) == ("2001:b020:6::c2a0:bbff:fe73:eb57", 62976)
    assert ndpi_endpoint(m6[3]) == ("ff02::1", 62976)
    assert LABEL_LINE.match("\t1\tICMP 10.0.0.1:0 -> 10.0.0.2:0 [proto: 81/ICMP]") is None
    assert LABEL_LINE.match("Unknown\t24\t6428\t14") is None


# -- the corpus --------------------------------------------------------------------


@pytest.mark.corpus
def test_capture_matches_ndpi(ndpi_capture: Path) -> None:
    theirs, ours, _, _ = compare(ndpi_capture)
    missing, extra = theirs - ours, ours - theirs
    reason = ACCEPTED_DIFFERENCES.get(ndpi_capture.name)
    if reason is None:
        assert not missing and not extra, (
            f"{ndpi_capture.name}: pairs differ from nDPI's; only nDPI: {_show(missing) or '-'}; "
            f"only ours: {_show(extra) or '-'}"
        )
    else:
        assert missing or extra, (
            f"{ndpi_capture.name} now matches nDPI: take it out of ACCEPTED_DIFFERENCES ({reason})"
        )
        assert len(missing) + len(extra) <= MAX_ACCEPTED_PAIRS, (
            f"{ndpi_capture.name} differs more than its accepted reason explains ({reason}); "
            f"only nDPI: {_show(missing) or '-'}; only ours: {_show(extra) or '-'}"
        )


@pytest.mark.corpus
def test_accepted_differences_still_differ(corpus: Path) -> None:
    """Every accepted capture exists and still differs (keeps the list honest)."""
    folder = corpus / "ndpi" / "pcap"
    absent = [name for name in ACCEPTED_DIFFERENCES if not (folder / name).is_file()]
    assert not absent, f"accepted captures missing from the corpus: {absent}"
    matching = [name for name in ACCEPTED_DIFFERENCES if len(set.symmetric_difference(*compare(folder / name)[:2])) == 0]
    assert not matching, f"these captures now match nDPI; remove them from ACCEPTED_DIFFERENCES: {matching}"


@pytest.mark.corpus
def test_total_flow_count_close_to_ndpi(corpus: Path, corpus_captures: list[Path]) -> None:
    captures = [p for p in corpus_captures if p.parent == corpus / "ndpi" / "pcap"]
    assert captures
    their_pairs = our_pairs = theirs = ours = 0
    for capture in captures:
        tp, op, t, o = compare(capture)
        their_pairs, our_pairs = their_pairs + len(tp), our_pairs + len(op)
        theirs, ours = theirs + t, ours + o
    assert theirs > 1000, f"only {theirs} nDPI flows over {len(captures)} captures: labels not parsed?"
    assert abs(ours - theirs) <= TOTAL_TOLERANCE * theirs, f"{ours} flows against nDPI's {theirs}"
    assert abs(our_pairs - their_pairs) <= TOTAL_TOLERANCE * their_pairs, f"{our_pairs} pairs against nDPI's {their_pairs}"
