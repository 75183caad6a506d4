"""Where flow labels come from, per collection of the corpus and the lab.

- ``ndpi/``: nDPI's own reading (``labels/NAME.out``): the master protocol
  of each flow found by DPI; nDPI's "Unknown" is our ``unknown``; flows
  nDPI named only by port, IP or a custom rule are left out, or the port
  baseline would be graded on its own answers.
- ``mining/``: every TCP flow goes to a pool (the collection's own label):
  ``Mining``/``mining``; DNS look-ups are benign ``DNS``.
- ``ddos/``: left out of the model's data. A flood is a rate of flows, not
  a kind of flow (one SYN of a flood is any SYN): the rule detectors find
  floods and sweeps, and are evaluated on these captures per capture.
- ``extra/OWNER__REPO/``: captures shipped without labels, read by the
  installed ndpiReader (``ndpi_reader``), then as ``ndpi/``.
- lab captures: ``NAME.labels.jsonl`` beside ``NAME.pcapng``, by Community ID.

Multi-flow attacks (``MULTI_FLOW_ATTACKS``: floods, scans, password
guessing) are not model data either: each of their flows alone is an
ordinary SYN, connection or login, and a model taught to call it an attack
flags the same flow from a benign client. The rule detectors find them by
rate, source and target; the model's attacks are those one flow shows
(mining, DNS tunnels, web attacks).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Callable, NamedTuple

from netgptd.train.ndpi_reader import ndpi_reading

UNKNOWN = "unknown"
BENIGN = "benign"
ATTACKS = ("benign", "dos", "scan", "bruteforce", "mining", "tunnel", "webattack")
MULTI_FLOW_ATTACKS = ("dos", "scan", "bruteforce")
DPI_CONFIDENCE = ("DPI", "DPI (cache)", "DPI (partial)", "DPI (aggressive)")

_NDPI_LINE = re.compile(
    r"^\s+\d+\s+(TCP|UDP) (\S+) (?:<->|->) (\S+) \[proto: [\d.]+/([^\]]+)\].*?\[Confidence: ([^\]]+)\]"
)


class Label(NamedTuple):
    app: str
    attack: str


Endpoint = tuple[str, int]
PairKey = tuple[str, frozenset[Endpoint]]
# Given a flow's (proto name, client, server, community id), its label or None (left out).
Labeller = Callable[[str, Endpoint, Endpoint, str], Label | None]


def ndpi_endpoint(text: str) -> Endpoint:
    """``1.2.3.4:80`` or ``[2001:db8::1]:443`` from an nDPI flow line."""
    if text.startswith("["):
        address, port = text[1:].rsplit("]:", 1)
    else:
        address, port = text.rsplit(":", 1)
    return address, int(port)


def ndpi_ip(text: str) -> str:
    """An address as ndpiReader prints it.

    IPv4 as usual. For IPv6, nDPI writes every run of zero groups as ``::``,
    even a single zero group and even several runs in one address
    (2600:1901:0:7a0b:: prints as ``2600:1901::7a0b::``); other groups are
    lower-case hex without leading zeros.
    """
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return str(address)
    packed = address.packed
    groups = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    out = ""
    previous_zero = False
    for i, group in enumerate(groups):
        if group == 0:
            if not previous_zero:
                out += "::"
            previous_zero = True
            continue
        if i > 0 and not previous_zero:
            out += ":"
        out += f"{group:x}"
        previous_zero = False
    return out


def ndpi_labeller(label_file: Path) -> Labeller:
    table: dict[PairKey, Label | None] = {}
    with open(label_file, encoding="latin-1") as f:
        for line in f:
            m = _NDPI_LINE.match(line)
            if not m:
                continue
            proto, a, b, name, confidence = m.groups()
            master = name.split(".", 1)[0]
            if master == "Unknown":
                label: Label | None = Label(UNKNOWN, BENIGN)
            elif confidence.strip() in DPI_CONFIDENCE:
                label = Label(master, "mining" if master == "Mining" else BENIGN)
            else:
                label = None
            table[(proto, frozenset((ndpi_endpoint(a), ndpi_endpoint(b))))] = label

    def lookup(proto: str, client: Endpoint, server: Endpoint, community_id: str) -> Label | None:
        key = (proto, frozenset(((ndpi_ip(client[0]), client[1]), (ndpi_ip(server[0]), server[1]))))
        return table.get(key)

    return lookup


def mining_labeller(proto: str, client: Endpoint, server: Endpoint, community_id: str) -> Label | None:
    if proto == "TCP":
        return Label("Mining", "mining")
    if proto == "UDP" and 53 in (client[1], server[1]):
        return Label("DNS", BENIGN)
    return None


def lab_labeller(label_file: Path) -> Labeller:
    table: dict[str, Label] = {}
    with open(label_file, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            app = UNKNOWN if entry["app"] == "Unknown" else entry["app"]  # nDPI's spelling of it
            table[entry["community_id"]] = Label(app, entry["attack"])

    def lookup(proto: str, client: Endpoint, server: Endpoint, community_id: str) -> Label | None:
        return table.get(community_id)

    return lookup


EXTRA = "extra"  # the corpus's folder of captures shipped without labels (one sub-folder per repository)


def label_source(capture: Path) -> str | None:
    """Where a capture's labels come from (``lab``, ``ndpi``, ``mining``, or
    ``ndpiReader`` for ``extra/``); None if it has none. Cheap: nothing is read."""
    if capture.with_name(capture.name.removesuffix(".pcapng") + ".labels.jsonl").is_file():
        return "lab"
    if capture.parent.name == "pcap" and capture.parent.parent.name == "ndpi":
        return "ndpi" if (capture.parent.parent / "labels" / f"{capture.name}.out").is_file() else None
    if capture.parent.name == "mining":
        return "mining"
    if capture.parent.parent.name == EXTRA:
        return "ndpiReader"
    return None


def labeller_for(capture: Path) -> Labeller | None:
    """The labeller of a capture, by where it lies; None if it has none.
    ``extra/`` captures are read by the installed ndpiReader (cached)."""
    source = label_source(capture)
    if source == "lab":
        return lab_labeller(capture.with_name(capture.name.removesuffix(".pcapng") + ".labels.jsonl"))
    if source == "ndpi":
        return ndpi_labeller(capture.parent.parent / "labels" / f"{capture.name}.out")
    if source == "mining":
        return mining_labeller
    if source == "ndpiReader":
        return ndpi_labeller(ndpi_reading(capture))
    return None
