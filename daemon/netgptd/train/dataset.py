"""Labelled flows of captures, tokenised, and the split by capture file.

No torch here: the examples are plain lists, so evaluation baselines and
tests can use them without the training extra.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import structlog
from tqdm import tqdm

from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.classify import classifiable
from netgptd.eve import PROTO_NAMES, ip_text
from netgptd.flow.table import Flow
from netgptd.ingest import Ingest
from netgptd.model.tokenizer import TokenizerConfig
from netgptd.train.labels import ATTACKS, MULTI_FLOW_ATTACKS, Label, label_source, labeller_for
from netgptd.train.ndpi_reader import NdpiReaderError

log = structlog.get_logger(__name__)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


@dataclass(frozen=True)
class FlowExample:
    """One labelled flow: its first packets (direction, bytes from the IP header on)."""

    capture: str
    collection: str
    packets: tuple[tuple[bool, bytes], ...]
    server_port: int
    proto: int
    label: Label
    source: str = ""  # where the capture comes from (``source_of``); "" for made-up examples

    @property
    def capture_id(self) -> str:
        """``collection/capture``: lab runs repeat file names, one folder each."""
        return f"{self.collection}/{self.capture}"

    @property
    def origin(self) -> str:
        """The source left out whole by leave-one-source-out (the collection where none is set)."""
        return self.source or self.collection


@dataclass
class Corpus:
    examples: list[FlowExample] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)


def capture_files(roots: Iterable[Path]) -> list[Path]:
    """Capture files under ``roots`` that have a label source."""
    files = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in CAPTURE_SUFFIXES)
        files += [p for p in paths if label_source(p) is not None]
    return files


def collection_of(capture: Path) -> str:
    """The collection a capture belongs to: its folder (``ndpi`` for nDPI's ``ndpi/pcap/``)."""
    if capture.parent.name == "pcap" and capture.parent.parent.name == "ndpi":
        return "ndpi"
    return capture.parent.name


def source_of(capture: Path) -> str:
    """The project a capture comes from, the unit leave-one-source-out holds
    out: ``ndpi``, ``mining``, ``lab`` (every lab run), ``extra/OWNER__REPO``."""
    kind = label_source(capture)
    if kind == "ndpiReader":
        return f"extra/{capture.parent.name}"
    return kind if kind in ("lab", "mining", "ndpi") else collection_of(capture)


def flows_of(capture: Path, config: TokenizerConfig) -> list[Flow]:
    ingest = Ingest(config.flow_config())
    for record in PcapFileSource(capture).packets():
        ingest.feed(record)
    return ingest.pop_ended() + ingest.flush()


def load_corpus(roots: Iterable[Path], config: TokenizerConfig, max_per_capture: int = 400,
                seed: int = 0, progress: bool = True) -> Corpus:  # fmt: skip
    """Every labelled TCP/UDP flow of the captures, at most ``max_per_capture``
    of each (a sample, so that flood captures do not drown the rest). Left
    out, as serving leaves them unclassified: flows without payload; and
    flows of multi-flow attacks (``labels.MULTI_FLOW_ATTACKS``)."""
    corpus = Corpus()
    rng = random.Random(seed)
    files = capture_files(roots)
    for capture in tqdm(files, desc="flows", unit="capture", disable=not progress):
        try:
            labeller = labeller_for(capture)
            assert labeller is not None
            flows = flows_of(capture, config)
        except (CaptureFileError, NdpiReaderError) as exc:
            log.warning("capture_skipped", capture=str(capture), error=str(exc))
            continue
        examples, collection, source = [], collection_of(capture), source_of(capture)
        for flow in flows:
            proto = PROTO_NAMES.get(flow.proto)
            if proto not in ("TCP", "UDP") or not flow.first_packets:
                continue
            if not classifiable(flow):  # the rule serving applies
                corpus.left_out["no_payload"] += 1
                continue
            client = (ip_text(flow.client_ip), flow.client_port)
            server = (ip_text(flow.server_ip), flow.server_port)
            label = labeller(proto, client, server, flow.community_id)
            if label is None:
                corpus.left_out["unlabelled"] += 1
                continue
            if label.attack in MULTI_FLOW_ATTACKS:
                corpus.left_out["multi_flow_attack"] += 1
                continue
            packets = tuple((toserver, data) for _, toserver, data in flow.first_packets)
            examples.append(FlowExample(capture.name, collection, packets, flow.server_port, flow.proto, label, source))
        if len(examples) > max_per_capture:
            corpus.left_out["sampled_out"] += len(examples) - max_per_capture
            examples = rng.sample(examples, max_per_capture)
        corpus.examples += examples
    return corpus


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def _fingerprint(capture: str, examples: list[FlowExample]) -> str:
    """Captures with the same first flows are copies of one another (the
    mining collection holds such a pair): they must fall on one side."""
    first = sorted(examples, key=lambda e: e.packets)[:5]
    return hashlib.sha256(repr([e.packets for e in first]).encode()).hexdigest()


def test_captures(corpus: Corpus, test_share: float = 0.25) -> set[str]:
    """The split is by capture file, never by flow: within each collection
    (captures sharing a folder), the ``test_share`` of captures with the
    lowest hash of ``collection/name`` are held out, so every collection is
    in both parts; returns those capture ids (``FlowExample.capture_id``).
    Copies of a capture (same first flows) go with the capture."""
    per_capture: dict[str, list[FlowExample]] = {}
    for e in corpus.examples:
        per_capture.setdefault(e.capture_id, []).append(e)
    groups: dict[tuple[str, str], set[str]] = {}
    for name, examples in per_capture.items():
        groups.setdefault((examples[0].collection, _fingerprint(name, examples)), set()).add(name)
    by_collection: dict[str, list[set[str]]] = {}
    for (collection, _), names in groups.items():
        by_collection.setdefault(collection, []).append(names)
    held_out: set[str] = set()
    for collection, collection_groups in by_collection.items():
        count = max(1, round(len(collection_groups) * test_share)) if len(collection_groups) > 1 else 0
        # The collection's name is in the id hashed: repeated lab runs (same
        # file names, one folder each) hold out different scenarios.
        for names in sorted(collection_groups, key=lambda g: min(_hash(n) for n in g))[:count]:
            held_out |= names
    return held_out


def split(corpus: Corpus, test_share: float = 0.25) -> tuple[list[FlowExample], list[FlowExample]]:
    held_out = test_captures(corpus, test_share)
    train = [e for e in corpus.examples if e.capture_id not in held_out]
    test = [e for e in corpus.examples if e.capture_id in held_out]
    return train, test


def app_classes(train: Sequence[FlowExample], min_flows: int = 20, min_captures: int = 3) -> list[str]:
    """Applications with enough training flows, from enough captures, plus ``unknown``."""
    flows = Counter(e.label.app for e in train)
    captures: dict[str, set[str]] = {}
    for e in train:
        captures.setdefault(e.label.app, set()).add(e.capture_id)
    keep = sorted(a for a, n in flows.items() if n >= min_flows and len(captures[a]) >= min_captures and a != "unknown")
    return keep + ["unknown"]


def attack_classes(examples: Sequence[FlowExample]) -> list[str]:
    """The attack classes the data holds, ``benign`` first."""
    present = {e.label.attack for e in examples}
    return [a for a in ATTACKS if a in present or a == "benign"]
