"""The compiled hot path against the Python reference: the same records, packets, flows and counters.

The Rust parser and decoder (``hotpath/``) must give, on every capture of the corpus (extra/ included) and
on seeded mutants of real captures, exactly what ``CaptureParser`` and ``decode`` give: records (timestamps,
link types, bytes, lengths, interfaces), the error that stops a damaged capture (same words), drop counters,
and each frame's ``Packet`` or its ``DecodeError``/``NotIP`` reason. Replays through both engines must give
the same EVE flow and stats events (flows, counters, end reasons, Community IDs, malformed counts by reason).
Without the library (no Rust toolchain at install), netgptd falls back to Python and says so.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.capture.file_source import CHUNK, PcapFileSource
from netgptd.capture.pcap_format import CaptureFormatError, CaptureParser
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP
from netgptd.flow.config import FlowConfig, Timeouts
from netgptd.flow.logins import login_evidence
from netgptd.flow.table import Flow
from netgptd.hotpath.native import LIBRARY_ENV, load_problem
from netgptd.ingest import Ingest
from netgptd.replay import replay
from test_corpus_robustness import FUZZ_SEED, fuzz_inputs, mutate, record_layout

MUTANTS_PER_FILE = 200  # 4000 in all (a second or two); the slow variant takes 5000 per file


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    problem = load_problem()
    if problem is not None:
        if os.environ.get("CI"):  # CI installs cargo (setup.sh): a missing library there is a failure
            pytest.fail(f"compiled hot path missing in CI: {problem}")
        pytest.skip(f"compiled hot path not built: {problem}")


def _parse(parser: CaptureParser, data: bytes, chunks: list[int]) -> tuple:
    """Feed ``data`` in pieces of the given sizes (the rest at once); every observable of the parser."""
    records: list[PacketRecord] = []
    error = None
    at = 0
    try:
        for size in [*chunks, len(data)]:
            records += parser.feed(data[at : at + size])
            at += size
            if at >= len(data):
                break
    except CaptureFormatError as exc:
        records += list(exc.records)
        error = str(exc)
    return (records, error, parser.format, parser.linktypes, parser.pending, dict(parser.interface_drops),
            parser.blocks_skipped)  # fmt: skip


def _reference(records: list[PacketRecord]) -> list:
    out = []
    for record in records:
        try:
            out.append(decode(record))
        except (DecodeError, NotIP) as exc:
            out.append((type(exc).__name__, exc.reason))
    return out


def _compiled_decode(records: list[PacketRecord]) -> list:
    from netgptd.hotpath.decode import BatchDecoder

    decoder = BatchDecoder()
    out = []
    for start in range(0, len(records), 512):
        for item in decoder.decode(records[start : start + 512]):
            out.append((type(item).__name__, item.reason) if isinstance(item, Exception) else item)
    assert decoder.panics == 0
    return out


def _same(data: bytes, chunks: list[int], where: str) -> int:
    from netgptd.hotpath.parser import NativeCaptureParser

    ours = _parse(NativeCaptureParser(), data, chunks)  # type: ignore[arg-type]
    theirs = _parse(CaptureParser(), data, chunks)
    assert ours == theirs, f"{where}: compiled parser differs"
    records = theirs[0]
    assert _compiled_decode(records) == _reference(records), f"{where}: compiled decoder differs"
    return len(records)


@pytest.mark.corpus
@pytest.mark.timeout(600)
def test_every_corpus_capture_parses_and_decodes_alike(corpus: Path, corpus_captures: list[Path]) -> None:
    """Whole files at once, and in the file source's chunks; every record and packet the same."""
    assert any("extra" in p.relative_to(corpus).parts for p in corpus_captures)
    total = 0
    for path in corpus_captures:
        data = path.read_bytes()
        total += _same(data, [CHUNK] * (len(data) // CHUNK), str(path.relative_to(corpus)))
    assert total > 500_000


def _mutants(corpus: Path, captures: list[Path], per_file: int) -> None:
    rng = random.Random(FUZZ_SEED + 14)
    for path in fuzz_inputs(corpus, captures):
        data = path.read_bytes()
        layout = record_layout(data)
        for i in range(per_file):
            mutant, how = mutate(rng, data, layout)
            chunks = [rng.randint(1, 300) for _ in range(rng.randint(0, 4))]  # buffering across feeds too
            _same(mutant, chunks, f"{path.name} mutant {i} ({how}, chunks {chunks})")


@pytest.mark.corpus
@pytest.mark.timeout(300)
def test_seeded_mutants_parse_and_decode_alike(corpus: Path, corpus_captures: list[Path]) -> None:
    _mutants(corpus, corpus_captures, MUTANTS_PER_FILE)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.timeout(1800)
def test_many_more_mutants_parse_and_decode_alike(corpus: Path, corpus_captures: list[Path]) -> None:
    _mutants(corpus, corpus_captures, 5000)


def test_arbitrary_frames_decode_alike() -> None:
    """Random bytes under every link type the decoder knows (and one it does not), in one batch."""
    rng = random.Random(FUZZ_SEED)
    linktypes = (0, 1, 9, 12, 14, 50, 101, 104, 105, 108, 113, 127, 228, 229, 276, 147)
    records = []
    for i in range(20_000):
        frame = bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
        if i % 2 and len(frame) > 20:  # half with a plausible IP header where the decoder looks first
            frame = frame[:14] + bytes((0x45 if i % 4 == 1 else 0x60,)) + frame[15:]
        records.append(PacketRecord(i, rng.choice(linktypes), frame, len(frame)))
    assert _compiled_decode(records) == _reference(records)


def _replay(path: Path, engine: str) -> list[dict]:
    events: list[dict] = []
    replay([path], events.append, engine=engine)
    for event in events:
        if event["event_type"] == "stats":
            stats = event["netgpt"]["stats"]
            assert stats.pop("engine") == engine and stats.pop("hotpath_fallback") == 0
            assert stats.pop("hotpath_panics") == 0
    return events


@pytest.mark.corpus
@pytest.mark.timeout(600)
def test_every_capture_replays_alike(corpus: Path, corpus_captures: list[Path]) -> None:
    """EVE flow events (counters, end reasons, Community IDs, logins) and stats (malformed by reason)."""
    for path in corpus_captures:
        assert _replay(path, "compiled") == _replay(path, "python"), f"{path.relative_to(corpus)}: replays differ"


def _mutant_replays(corpus: Path, captures: list[Path], folder: Path, per_file: int) -> None:
    rng = random.Random(FUZZ_SEED + 15)
    mutant = folder / "mutant.pcap"
    for path in fuzz_inputs(corpus, captures):
        data = path.read_bytes()
        layout = record_layout(data)
        for i in range(per_file):
            mutated, how = mutate(rng, data, layout)
            mutant.write_bytes(mutated)
            assert _replay(mutant, "compiled") == _replay(mutant, "python"), f"{path.name} mutant {i} ({how})"


@pytest.mark.corpus
@pytest.mark.timeout(300)
def test_mutant_replays_alike(corpus: Path, corpus_captures: list[Path], tmp_path: Path) -> None:
    """Whole replays of mutants too, damaged captures included (their warning, the records before the damage)."""
    _mutant_replays(corpus, corpus_captures, tmp_path, 20)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.timeout(1800)
def test_many_more_mutant_replays_alike(corpus: Path, corpus_captures: list[Path], tmp_path: Path) -> None:
    _mutant_replays(corpus, corpus_captures, tmp_path, 500)


def _flows(paths: list[Path], engine: str, config: FlowConfig, batch: int,
           verdicts: bool) -> tuple[list[tuple], list[int], dict]:  # fmt: skip
    """Every ended flow's fields (buffers, logins, verdict and Community ID included), the flows the buffer hook
    saw (with ``verdicts`` it gives every other one a verdict, as early classification does), and the counters,
    for the captures one after another through one table."""
    ingest = Ingest(config, first_flow_id=1000, engine=engine)
    hooked: list[Flow] = []

    def classify(flow: Flow) -> None:
        hooked.append(flow)
        if verdicts and flow.flow_id % 2:
            flow.verdict = {"app": "early"}

    ingest.flows.on_buffer_full = classify
    ended: list[Flow] = []
    for path in paths:
        records = list(PcapFileSource(path).packets())
        for start in range(0, len(records), batch):
            ingest.feed_batch(records[start : start + batch], ended.extend)
        if records:
            ingest.flows.advance(records[-1].ts_ns + 7 * 10**9)  # a quiet spell: the clock loop's call
            ended += ingest.pop_ended()
    ended += ingest.flush()
    by_id = {flow.flow_id: flow for flow in ended}
    assert all(by_id.get(flow.flow_id) is flow for flow in hooked), "a hooked flow is not the record that ended"
    fields = [(f.flow_id, f.proto, f.ip_version, f.client_ip, f.client_port, f.server_ip, f.server_port, f.start_ns,
               f.last_ns, f.pkts_toserver, f.pkts_toclient, f.bytes_toserver, f.bytes_toclient, f.state,
               f.tcp_flags_toserver, f.tcp_flags_toclient, f.first_packets, f.end_reason, f.community_id,
               login_evidence(f), f.verdict) for f in ended]  # fmt: skip
    stats = ingest.stats()
    del stats["engine"], stats["hotpath_fallback"], stats["hotpath_panics"]
    return fields, [flow.flow_id for flow in hooked], stats


@pytest.mark.corpus
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("batch", "verdicts"), [(512, False), (1, True)])
def test_a_crowded_table_behaves_alike(corpus: Path, corpus_captures: list[Path], batch: int, verdicts: bool) -> None:
    """A small table (emergency eviction), short idle and active timeouts (continuations), few fragment trains
    and payload-only buffers, over the largest captures back to back: the same records, buffers and hook calls.
    With verdicts given in the hook (early classification), batches of one record: the hook runs after each
    batch, so only then does a verdict reach a continuation as at once as in Python (README, *Hot path*)."""
    fast = Timeouts(2, 20, 1, 1, 5, 0, active=15)
    config = FlowConfig(timeouts={"default": fast, "tcp": Timeouts(3, 30, 2, 1, 6, 1, active=12)}, max_flows=64,
                        first_packets=3, first_packet_bytes=40, buffer_payload_only=True, max_fragment_trains=4)  # fmt: skip
    largest = sorted(corpus_captures, key=lambda p: p.stat().st_size)[-40:]
    python = _flows(largest, "python", config, batch, verdicts)
    compiled = _flows(largest, "compiled", config, batch, verdicts)
    assert python[2]["evictions"]["emergency"] > 0 and python[2]["evictions"]["active_timeout"] > 0
    assert compiled[2] == python[2]
    assert compiled[1] == python[1]
    assert compiled[0] == python[0]


def _netgptd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netgptd.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})  # fmt: skip


@pytest.mark.corpus
def test_without_the_library_python_takes_over_and_says_so(corpus: Path, tmp_path: Path) -> None:
    """A build without a compiler: ``auto`` warns once and the stats say so; ``compiled`` is one clear line."""
    capture = corpus / "ndpi" / "pcap" / "dns.pcap"
    missing = {LIBRARY_ENV: str(tmp_path / "absent.so")}
    eve = tmp_path / "eve.json"
    proc = _netgptd("replay", str(capture), "--no-model", "--eve", str(eve), "-q", env=missing)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("hotpath_fallback") == 1, proc.stderr
    stats = [json.loads(line) for line in eve.read_text().splitlines()][-1]["netgpt"]["stats"]
    assert stats["engine"] == "python" and stats["hotpath_fallback"] == 1 and stats["packets"] > 0
    proc = _netgptd("replay", str(capture), "--no-model", "--engine", "compiled", "-q", env=missing)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["netgptd: error: the compiled hot path is not available: "
                                                "not built (no Rust toolchain when netgptd was installed?)"]  # fmt: skip
