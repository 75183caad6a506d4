"""Never crash, never hang: every corpus capture, a seeded mutation fuzz, and decode() on arbitrary bytes.

Many corpus captures are malformed on purpose (tcpdump's printer tests,
suricata-verify's evasion tests, nDPI's fuzz seeds). Each one must replay
in-process without an exception, within a time limit, with the closing stats
event accounting for every record of the file.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PCAPNG_MAGIC, starts_like_capture
from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.capture.records import PacketRecord
from netgptd.decode import decoder
from netgptd.decode.packet import DecodeError, NotIP, Packet
from netgptd.replay import replay

PER_FILE_LIMIT_S = 30
PER_MUTANT_LIMIT_S = 5.0
FUZZ_SEED = 20240501
FUZZ_FILES = 20
MUTANTS_PER_FILE = 200  # 4000 in all
FUZZ_TOTAL_LIMIT_S = 60.0
FUZZ_MAX_FILE_BYTES = 16 * 1024


# Where capinfos (Wireshark's reader) counts another number of records than we do.
CAPINFOS_DIFFERENCES = {
    "ndpi/pcap/fuzz-2021-10-13.pcap": (
        "pcap version 2.0: Wireshark and libpcap swap caplen and len for pcap versions before 2.3, "
        "we read 2.4's layout; the one record then claims 524501 bytes in a 239-byte file"
    ),
    "suricata-verify/bug-6875-01/fuzz.pcap": (
        "fuzzed: record 2 claims 1409179648 bytes; libpcap and we stop after record 1, Wireshark "
        "takes the implausible record as a sign of another pcap variant and reads a second one"
    ),
}


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the product swallows it."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise Hang in the main thread after ``seconds``; restores any outer timer (pytest-timeout's)."""

    def on_alarm(signum, frame):  # type: ignore[no-untyped-def]
        raise Hang(f"{what} still running after {seconds} s")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if outer_delay:
            remaining = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), outer_interval)


def count_records(path: Path) -> tuple[int, int, bool]:
    """(records, sum of their wire lengths, truncated) as read by the file source alone."""
    source = PcapFileSource(path)
    n = wire = 0
    for record in source.packets():
        n += 1
        wire += record.orig_len
    return n, wire, source.truncated


def check_replay_output(events: list[dict], records: int, wire_bytes: int, where: str) -> None:
    """What any replay of one readable file must produce."""
    assert events, f"{where}: no events at all"
    stats_events = [e for e in events if e["event_type"] == "stats"]
    assert len(stats_events) == 1 and events[-1]["event_type"] == "stats", f"{where}: stats event not last/once"
    stats = events[-1]["netgpt"]["stats"]
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == len(events) - 1, f"{where}: unexpected event types {[e['event_type'] for e in events]}"
    assert stats["packets"] == records, f"{where}: stats packets {stats['packets']} != {records} records read"
    assert stats["bytes"] == wire_bytes, f"{where}: stats bytes {stats['bytes']} != {wire_bytes}"
    # every record ends up somewhere: in a flow, or in one of the counters
    in_flows = sum(e["flow"]["pkts_toserver"] + e["flow"]["pkts_toclient"] for e in flows)
    accounted = in_flows + sum(stats["decode_errors"].values()) + sum(stats["skipped"].values()) + stats["fragments_unmatched"]
    assert accounted == records, f"{where}: {accounted} packets accounted for, {records} records read"
    # every flow is reported exactly once (an active timeout reports a continuation too)
    assert len(flows) == stats["flows"] + stats["evictions"]["active_timeout"], f"{where}: flow events vs stats"
    assert len({e["flow_id"] for e in flows}) == len(flows), f"{where}: duplicate flow_id"
    assert stats["active_flows"] == 0, f"{where}: flows left in the table after the flush"
    for event in events:
        json.dumps(event)  # what the EVE writer will do: must not raise


# -- the corpus listing --------------------------------------------------------------


@pytest.mark.corpus
def test_every_capture_in_the_corpus_is_listed(corpus: Path, corpus_captures: list[Path]) -> None:
    """conftest's rule finds every file that starts like a capture, and only those (a suffix alone is not enough)."""
    listed = set(corpus_captures)
    captures = {path for path in corpus.rglob("*") if path.is_file() and starts_like_capture(path)}
    assert not captures - listed, f"captures the rule misses: {sorted(map(str, captures - listed))[:10]}"
    assert not listed - captures, f"listed files that are no captures: {sorted(map(str, listed - captures))[:10]}"
    assert len(listed) > 500, f"only {len(listed)} captures found under {corpus}"


# -- every corpus capture ------------------------------------------------------------

_counts: dict[Path, int] = {}


@pytest.mark.corpus
@pytest.mark.timeout(PER_FILE_LIMIT_S + 10)
def test_capture_replays_cleanly(corpus_capture: Path) -> None:
    where = corpus_capture.name
    with time_limit(PER_FILE_LIMIT_S, f"reading {where}"):
        records, wire, truncated = count_records(corpus_capture)
    _counts[corpus_capture] = records
    events: list[dict] = []
    with time_limit(PER_FILE_LIMIT_S, f"replaying {where}"), structlog.testing.capture_logs() as logs:
        result = replay([corpus_capture], events.append)
    assert not result.failed_files, f"{where}: {result.failed_files}"
    check_replay_output(events, records, wire, where)
    warned = [e for e in logs if e.get("event") == "capture_truncated"]
    assert (result.truncated_files == [str(corpus_capture)]) == truncated, f"{where}: truncation not reported"
    assert len(warned) == int(truncated), f"{where}: {len(warned)} truncation warnings, truncated={truncated}"


@pytest.mark.corpus
@pytest.mark.timeout(120)
def test_record_counts_match_capinfos(corpus: Path, corpus_captures: list[Path]) -> None:
    """An independent reader (Wireshark's capinfos) counts as many records as we do."""
    capinfos = shutil.which("capinfos")
    if capinfos is None:
        pytest.skip("capinfos (Wireshark) is not installed")
    names = [str(p.relative_to(corpus)) for p in corpus_captures]
    theirs: dict[str, int] = {}
    for start in range(0, len(names), 400):
        proc = subprocess.run([capinfos, "-T", "-r", "-c", "-M", *names[start : start + 400]], cwd=corpus,
                              capture_output=True, text=True, errors="replace", timeout=60)  # fmt: skip
        for line in proc.stdout.splitlines():
            name, _, count = line.rpartition("\t")
            if count.strip().isdigit():
                theirs[name] = int(count)
        for line in proc.stderr.splitlines():  # "An error occurred after reading N packets from "F"."
            if "error occurred after reading" in line and '"' in line:
                count = int(line.split("after reading ", 1)[1].split()[0])
                theirs.setdefault(line.split('"')[1], count)
    assert len(theirs) > 0.9 * len(names), f"capinfos counted only {len(theirs)} of {len(names)} files"
    differ = {}
    for path in corpus_captures:
        name = str(path.relative_to(corpus))
        if name not in theirs:
            continue  # a link type capinfos does not know
        ours = _counts.get(path)
        if ours is None:
            ours = count_records(path)[0]
        if ours != theirs[name]:
            differ[name] = (ours, theirs[name])
    unexplained = {k: v for k, v in differ.items() if k not in CAPINFOS_DIFFERENCES}
    assert not unexplained, f"record counts (ours, capinfos) differ: {unexplained}"
    stale = [k for k in CAPINFOS_DIFFERENCES if k in theirs and k not in differ]
    assert not stale, f"these now agree with capinfos; remove them from CAPINFOS_DIFFERENCES: {stale}"


# -- mutation fuzzing ----------------------------------------------------------------

# Small captures worth mutating when present: tunnels, fragments, IPv6, odd link types.
FUZZ_PREFERRED = [
    "ndpi/pcap/4in4tunnel.pcap", "ndpi/pcap/4in6tunnel.pcap", "ndpi/pcap/6in4tunnel.pcap",
    "ndpi/pcap/teredo.pcap", "ndpi/pcap/pptp.pcap", "ndpi/pcap/smb_frags.pcap",
    "ndpi/pcap/gtp_false_positive.pcapng", "ndpi/pcap/esp.pcapng", "ndpi/pcap/hls.pcapng",
    "ndpi/pcap/quic-fuzz-overflow.pcapng", "ndpi/pcap/BGP_redist.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap",
]  # fmt: skip


def _linktypes(path: Path) -> tuple[str | None, tuple[int, ...]]:
    source = PcapFileSource(path)
    try:
        for _ in source.packets():
            pass
    except CaptureFileError:
        pass
    return source.parser.format, tuple(sorted(set(source.parser.linktypes)))


def fuzz_inputs(corpus: Path, captures: list[Path]) -> list[Path]:
    """~20 small real captures: the preferred ones, then one per (format, link types) kind."""
    chosen = [corpus / name for name in FUZZ_PREFERRED if (corpus / name).is_file()]
    chosen = [p for p in chosen if p.stat().st_size <= 2 * FUZZ_MAX_FILE_BYTES]
    kinds: dict[tuple, Path] = {}
    for path in captures:
        size = path.stat().st_size
        if 600 <= size <= FUZZ_MAX_FILE_BYTES:
            kind = _linktypes(path)
            if kind not in kinds or size > kinds[kind].stat().st_size:
                kinds[kind] = path
    for _, path in sorted(kinds.items(), key=lambda kv: str(kv[0])):
        if len(chosen) >= FUZZ_FILES:
            break
        if path not in chosen:
            chosen.append(path)
    small = sorted(p for p in captures if 600 <= p.stat().st_size <= FUZZ_MAX_FILE_BYTES and p not in chosen)
    random.Random(FUZZ_SEED).shuffle(small)
    return chosen + small[: max(0, FUZZ_FILES - len(chosen))]


def record_layout(data: bytes) -> tuple[str, str, list[tuple[int, int, int]]]:
    """(format, byte order, [(record or block offset, frame offset, frame length)]) of a capture."""
    magic = data[:4]
    out: list[tuple[int, int, int]] = []
    if magic == PCAPNG_MAGIC:
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        off = 0
        while off + 12 <= len(data):
            block_type, total = struct.unpack_from(endian + "II", data, off)
            if total < 12 or off + total > len(data):
                break
            if block_type == 6 and total >= 32:
                caplen = struct.unpack_from(endian + "I", data, off + 20)[0]
                out.append((off, off + 28, caplen))
            else:
                out.append((off, -1, 0))
            off += total
        return "pcapng", endian, out
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x34\xcd\xb2\xa1") else ">"
    extra = 8 if magic in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34") else 0
    off = 24
    while off + 16 + extra <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        if off + 16 + extra + incl > len(data):
            break
        out.append((off, off + 16 + extra, incl))
        off += 16 + extra + incl
    return "pcap", endian, out


def _length_value(rng: random.Random, old: int, bits: int) -> int:
    top = (1 << bits) - 1
    choice = rng.randrange(6)
    if choice == 0:
        return 0
    if choice == 1:
        return top
    if choice == 2:
        return min(top, max(0, old + rng.randint(-8, 8)))
    if choice == 3:
        return rng.randint(0, 64)
    if choice == 4:
        return min(top, old * 2 + 1)
    return rng.randint(0, top)


def _mutate_length(rng: random.Random, buf: bytearray, layout: tuple[str, str, list]) -> str:
    fmt, endian, records = layout
    if not records:
        return "length: no records"
    hdr, frame, caplen = rng.choice(records)
    choices: list[tuple[int, int, str]] = []  # (offset, bits, name)
    if fmt == "pcap":
        choices += [(hdr + 8, 32, "pcap incl_len"), (hdr + 12, 32, "pcap orig_len")]
    else:
        choices += [(hdr + 4, 32, "pcapng block length")]
        if frame >= 0:
            choices += [(hdr + 20, 32, "epb caplen"), (hdr + 24, 32, "epb origlen")]
    if frame >= 0 and caplen > 24:
        # length-like fields of the packet itself, for Ethernet + IPv4/IPv6 + TCP/UDP frames
        for rel, bits, name in ((16, 16, "ipv4 total length"), (14, 8, "ipv4 version/ihl"), (18, 16, "ipv6 payload length"),
                                (20, 8, "ipv6 next header / ipv4 frag"), (46, 8, "tcp data offset"), (38, 16, "udp length"),
                                (23, 8, "ipv4 protocol"), (12, 16, "ethertype")):  # fmt: skip
            if rel + bits // 8 <= caplen:
                choices.append((frame + rel, bits, name))
    at, bits, name = rng.choice(choices)
    if at + bits // 8 > len(buf):
        return f"length: {name} out of range"
    code = {8: "B", 16: "H", 32: "I"}[bits]
    order = endian if name.startswith(("pcap", "epb")) else ">"
    old = struct.unpack_from(order + code, buf, at)[0]
    new = _length_value(rng, old, bits)
    struct.pack_into(order + code, buf, at, new)
    return f"{name} at {at}: {old} -> {new}"


def mutate(rng: random.Random, data: bytes, layout: tuple[str, str, list]) -> tuple[bytes, str]:
    """One mutant of ``data`` and a description of what was done to it."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        n = len(buf)
        op = rng.randrange(7)
        if n == 0:
            break
        if op == 0:
            flips = rng.randint(1, 8)
            for _ in range(flips):
                at = rng.randrange(n)
                buf[at] ^= 1 << rng.randrange(8)
            done.append(f"flip {flips} bits")
        elif op == 1:
            at, size, value = rng.randrange(n), rng.randint(1, 16), rng.choice((0x00, 0xFF))
            buf[at : at + size] = bytes([value]) * len(buf[at : at + size])
            done.append(f"set {size} bytes at {at} to {value:#04x}")
        elif op == 2:
            at = rng.randrange(n)
            del buf[at:]
            done.append(f"truncate at {at}")
        elif op == 3:
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 256))
            c = rng.randrange(n + 1)
            buf[c:c] = buf[a:b]
            done.append(f"duplicate {a}:{b} at {c}")
        elif op == 4:
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 256))
            del buf[a:b]
            done.append(f"remove {a}:{b}")
        elif op == 5:
            done.append(_mutate_length(rng, buf, layout))
        else:  # a burst of random bytes inside one frame (headers get garbled, lengths stay)
            _, frame, caplen = rng.choice(layout[2]) if layout[2] else (0, -1, 0)
            if frame >= 0 and caplen:
                at = frame + rng.randrange(min(caplen, 80))
                size = rng.randint(1, 8)
                buf[at : at + size] = rng.randbytes(len(buf[at : at + size]))
                done.append(f"random bytes at {at}")
    return bytes(buf), "; ".join(done)


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.timeout(FUZZ_TOTAL_LIMIT_S * 2)
def test_mutated_captures_never_crash(corpus: Path, corpus_captures: list[Path], tmp_path: Path) -> None:
    inputs = fuzz_inputs(corpus, corpus_captures)
    assert len(inputs) >= FUZZ_FILES // 2, f"too few small captures to fuzz: {inputs}"
    rng = random.Random(FUZZ_SEED)
    failures: list[str] = []
    outcomes = {"completed": 0, "unreadable": 0, "truncated": 0}
    started = time.monotonic()
    for index, source in enumerate(inputs):
        original = source.read_bytes()
        layout = record_layout(original)
        target = tmp_path / f"mutant{index}{source.suffix}"
        for number in range(MUTANTS_PER_FILE):
            data, how = mutate(rng, original, layout)
            target.write_bytes(data)
            where = f"{source.relative_to(corpus)} mutant {number} ({how})"
            events: list[dict] = []
            try:
                with time_limit(PER_MUTANT_LIMIT_S, where), structlog.testing.capture_logs():
                    result = replay([target], events.append)
                    try:
                        records, wire, _ = count_records(target)
                    except CaptureFileError:
                        records = wire = 0
                if result.failed_files:
                    outcomes["unreadable"] += 1
                else:
                    outcomes["completed"] += 1
                    outcomes["truncated"] += bool(result.truncated_files)
                check_replay_output(events, records, wire, where)
            except CaptureFileError:
                outcomes["unreadable"] += 1
            except (Exception, Hang) as exc:  # noqa: BLE001 - any other outcome is the bug we look for
                failures.append(f"{where}: {type(exc).__name__}: {exc}")
                if len(failures) >= 10:
                    break
        if len(failures) >= 10:
            break
    elapsed = time.monotonic() - started
    mutants = sum(outcomes.values()) - outcomes["truncated"]
    assert not failures, f"{len(failures)} mutants failed (seed {FUZZ_SEED}):\n" + "\n".join(failures)
    assert mutants == len(inputs) * MUTANTS_PER_FILE
    assert outcomes["completed"] > mutants // 2, f"most mutants should still be readable: {outcomes}"
    assert elapsed < FUZZ_TOTAL_LIMIT_S, f"{mutants} mutants took {elapsed:.1f} s"


@pytest.mark.corpus
def test_far_future_timestamp_does_not_crash(corpus_captures: list[Path], tmp_path: Path) -> None:
    """A pcapng timestamp beyond year 9999 (found by the fuzz test above) still gives EVE output."""
    source = next((p for p in corpus_captures if p.suffix == ".pcapng" and 600 <= p.stat().st_size <= 64 * 1024
                   and p.read_bytes()[8:12] == b"\x4d\x3c\x2b\x1a"), None)  # fmt: skip
    if source is None:
        pytest.skip("no small little-endian pcapng in the corpus")
    data = bytearray(source.read_bytes())
    first_epb = next(off for off, frame, _ in record_layout(bytes(data))[2] if frame >= 0)
    struct.pack_into("<I", data, first_epb + 12, 0xFFFFFFFF)  # timestamp high word: ~year 584000 in microseconds
    target = tmp_path / "future.pcapng"
    target.write_bytes(data)
    events: list[dict] = []
    with structlog.testing.capture_logs():
        replay([target], events.append)
    records, wire, _ = count_records(target)
    check_replay_output(events, records, wire, str(source))
    assert any(e["timestamp"].startswith("9999-12-31T23:59:59") for e in events), [e["timestamp"] for e in events]


# -- decode() on arbitrary bytes -----------------------------------------------------

LINKTYPES = [
    decoder.LINKTYPE_NULL, decoder.LINKTYPE_ETHERNET, decoder.LINKTYPE_PPP, decoder.LINKTYPE_RAW_BSD,
    decoder.LINKTYPE_RAW_BSD14, decoder.LINKTYPE_PPP_HDLC, decoder.LINKTYPE_RAW, decoder.LINKTYPE_CHDLC,
    decoder.LINKTYPE_IEEE802_11, decoder.LINKTYPE_LOOP, decoder.LINKTYPE_LINUX_SLL, decoder.LINKTYPE_RADIOTAP,
    decoder.LINKTYPE_IPV4, decoder.LINKTYPE_IPV6, decoder.LINKTYPE_LINUX_SLL2,
    147,  # not decoded: NotIP
]  # fmt: skip

OTHER_ETHERTYPES = [0x8100, 0x88A8, 0x9100, 0x8847, 0x8848, 0x8864, 0x0806, 0x88CC, 0x0042, 0x6558]
IP_PROTOS = [1, 4, 6, 17, 41, 47, 58, 132, 0, 43, 44, 50, 51, 60, 135, 255]

_u8 = st.integers(0, 0xFF)
_u16 = st.integers(0, 0xFFFF)


def _mostly(values: list, other: st.SearchStrategy) -> st.SearchStrategy:
    """One of ``values`` three times in four, else ``other`` (Hypothesis favours small integers)."""
    choice = st.sampled_from(values)
    return st.one_of(choice, choice, choice, other)


def _be16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _bytes(n: int) -> st.SearchStrategy:
    return st.binary(min_size=n, max_size=n)


@st.composite
def _network(draw: st.DrawFn, depth: int = 0) -> tuple[int, bytes]:
    """(IP version, an IP packet with plausible headers and fuzzed fields, maybe tunnelling another)."""
    version = draw(st.sampled_from([4, 4, 6, 6, 0]))
    if version == 0:
        return 0, draw(st.binary(max_size=80))
    proto = draw(_mostly(IP_PROTOS, _u8))
    body = draw(_transport(proto, depth))
    if version == 4:
        ihl = draw(_mostly([5, 5, 5, 6, 15], st.integers(0, 15)))
        options = draw(_bytes(max(0, ihl * 4 - 20)))
        total = draw(_mostly([20 + len(options) + len(body)], _u16))
        frag = draw(_mostly([0, 0, 0x4000, 0x2000, 0x0001, 0x2005], _u16))
        header = bytes([0x40 | ihl, 0]) + _be16(total) + draw(_bytes(2)) + _be16(frag)
        header += bytes([64, proto]) + b"\0\0" + draw(_bytes(8))
        return 4, header + options + body
    length = draw(_mostly([len(body)], _u16))
    return 6, b"\x60\0\0\0" + _be16(length) + bytes([proto, 64]) + draw(_bytes(32)) + body


def _ethertype_for(draw: st.DrawFn, version: int) -> int:
    usual = {4: 0x0800, 6: 0x86DD}.get(version, 0x0800)
    return draw(_mostly([usual], st.sampled_from(OTHER_ETHERTYPES) | _u16))


@st.composite
def _ethernet_frame(draw: st.DrawFn, depth: int) -> bytes:
    version, packet = draw(_network(depth + 1))
    return draw(_bytes(12)) + _be16(_ethertype_for(draw, version)) + packet


@st.composite
def _transport(draw: st.DrawFn, proto: int, depth: int) -> bytes:
    nest = depth < 2 and draw(st.booleans())
    inner = draw(_network(depth + 1))[1] if nest else draw(st.binary(max_size=40))
    if proto == 6:
        offset = draw(_mostly([5, 5, 8], st.integers(0, 15)))
        return draw(_bytes(12)) + bytes([offset << 4, draw(_u8)]) + draw(_bytes(6)) + inner
    if proto == 17:
        dport = draw(_mostly([4789, 2152, 53], _u16))
        sport = draw(_mostly([2152, 1234], _u16))
        if dport == 4789:
            flags = draw(_mostly([0x08], _u8))
            inner = bytes([flags]) + bytes(7) + (draw(_ethernet_frame(depth)) if nest else inner)
        elif 2152 in (sport, dport):
            flags = draw(_mostly([0x30, 0x32, 0x34, 0x31, 0x20], _u8))
            extra = draw(st.binary(min_size=4, max_size=12)) if flags & 7 else b""
            inner = bytes([flags, draw(_mostly([0xFF], _u8))]) + draw(_bytes(6)) + extra + inner
        length = draw(_mostly([8 + len(inner)], _u16))
        return _be16(sport) + _be16(dport) + _be16(length) + b"\0\0" + inner
    if proto == 47:
        flags = draw(_mostly([0x0000, 0x2000, 0xB000, 0x3001, 0x1081], _u16))
        ethertype = draw(_mostly([0x0800, 0x86DD, 0x6558, 0x880B], _u16))
        fields = draw(st.binary(max_size=16))
        if ethertype == 0x6558 and nest:
            inner = draw(_ethernet_frame(depth))
        return _be16(flags) + _be16(ethertype) + fields + inner
    if proto in (1, 58, 132):
        return draw(st.binary(max_size=16)) + inner
    if proto in (0, 43, 44, 51, 60, 135):  # IPv6 extension headers
        return bytes([draw(st.sampled_from(IP_PROTOS)), draw(_mostly([0, 0, 1], _u8))]) + draw(_bytes(6)) + inner
    return inner


@st.composite
def _frames(draw: st.DrawFn) -> PacketRecord:
    linktype = draw(st.sampled_from(LINKTYPES))
    version, packet = draw(_network())
    ethertype = _ethertype_for(draw, version)
    tag = b""
    if ethertype in (0x8100, 0x88A8, 0x9100):  # VLAN tag, then the real ethertype
        tag = draw(_bytes(2)) + _be16(draw(_mostly([0x0800, 0x86DD, 0x8100], _u16)))
    elif ethertype in (0x8847, 0x8848):  # one MPLS label, bottom of stack
        tag = draw(_bytes(2)) + bytes([draw(_mostly([0x01], _u8))]) + b"\x40"
    elif ethertype == 0x8864:  # PPPoE session, then a PPP protocol
        tag = draw(_bytes(6)) + draw(st.sampled_from([b"\x00\x21", b"\x00\x57", b"\x21", b"\xc0\x21"]))
    ether_tail = _be16(ethertype) + tag
    if linktype == decoder.LINKTYPE_ETHERNET:
        link = draw(_bytes(12)) + ether_tail
    elif linktype == decoder.LINKTYPE_LINUX_SLL:
        link = draw(_bytes(14)) + ether_tail
    elif linktype == decoder.LINKTYPE_LINUX_SLL2:
        link = ether_tail[:2] + draw(_bytes(18)) + ether_tail[2:]
    elif linktype == decoder.LINKTYPE_CHDLC:
        link = draw(_bytes(2)) + ether_tail
    elif linktype in (decoder.LINKTYPE_NULL, decoder.LINKTYPE_LOOP):
        family = draw(_mostly([2] if version == 4 else [10, 24, 28, 30], st.integers(0, 0xFFFFFFFF)))
        link = family.to_bytes(4, draw(st.sampled_from(["little", "big"])))
    elif linktype in (decoder.LINKTYPE_PPP, decoder.LINKTYPE_PPP_HDLC):
        usual = [b"\x00\x21", b"\x21"] if version == 4 else [b"\x00\x57"]
        link = draw(st.sampled_from([b"", b"\xff\x03"])) + draw(_mostly(usual, st.sampled_from([b"\xc0\x21", b"\x80\x21"])))
    elif linktype in (decoder.LINKTYPE_IEEE802_11, decoder.LINKTYPE_RADIOTAP):
        fc = draw(_mostly([0x08, 0x88], _u8))
        flags = draw(_mostly([0x00, 0x01, 0x02, 0x03], _u8))
        link = bytes([fc, flags]) + draw(_bytes(22))
        link += draw(_bytes(6)) if flags & 3 == 3 else b""
        link += b"\0\0" if fc & 0x80 else b""
        link += draw(_mostly([b"\xaa\xaa\x03\x00\x00\x00"], _bytes(6))) + ether_tail[:2]
        if linktype == decoder.LINKTYPE_RADIOTAP:
            fields = draw(st.binary(min_size=4, max_size=32))
            rt_len = draw(_mostly([4 + len(fields)], _u16))
            link = b"\0\0" + rt_len.to_bytes(2, "little") + fields + link
    else:
        link = b""
    data = link + packet
    if draw(st.sampled_from([False, False, False, True])):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere
    orig_len = draw(_mostly([len(data)], _u16))
    return PacketRecord(draw(st.integers(0, 2**63)), linktype, data, orig_len)


def _check_decode(record: PacketRecord) -> None:
    try:
        packet = decoder.decode(record)
    except (DecodeError, NotIP) as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert isinstance(packet, Packet)
    size = 4 if packet.ip_version == 4 else 16
    assert packet.ip_version in (4, 6) and len(packet.src) == len(packet.dst) == size
    assert 0 <= packet.l3_off <= packet.end <= len(packet.data), packet
    if packet.l4_off >= 0:
        assert packet.l3_off < packet.l4_off <= packet.payload_off <= packet.end, packet
    assert 0 <= packet.sport <= 0xFFFF and 0 <= packet.dport <= 0xFFFF
    assert packet.payload_len >= 0


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_decode_structured_frames(record: PacketRecord) -> None:
    _check_decode(record)


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_decode_arbitrary_bytes(linktype: int, data: bytes, orig_len: int) -> None:
    _check_decode(PacketRecord(0, linktype, data, orig_len))
