"""CaptureParser against files written by netgptd.synth.pcap_writer."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.capture.file_source import read_stream
from netgptd.capture.pcap_format import MAX_RECORD, CaptureFormatError, CaptureParser, InterfaceDrops
from netgptd.capture.records import PacketRecord
from netgptd.synth.frames import ethernet, ipv4, udp
from netgptd.synth.pcap_writer import Interface, PcapngWriter, write_pcap, write_pcapng

T0 = 1_700_000_000 * 1_000_000_000
ETHERNET, RAW, IPV4, SLL = 1, 101, 228, 113


def _frame(i: int) -> bytes:
    """Frames of varied lengths (so pcapng padding varies too)."""
    return ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", 1000 + i, 53, bytes(i % 7))))


def _records(n: int, step_ns: int, linktype: int = ETHERNET, interface: int = 0) -> list[PacketRecord]:
    return [PacketRecord(T0 + i * step_ns, linktype, _frame(i), len(_frame(i)) + i % 3, interface) for i in range(n)]


def _parse(data: bytes) -> tuple[list[PacketRecord], CaptureParser]:
    parser = CaptureParser()
    records = parser.feed(data)
    return records, parser


def _pcap(records: list[PacketRecord], **kwargs: object) -> bytes:
    out = io.BytesIO()
    write_pcap(out, records, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def _pcapng(records: list[PacketRecord], interfaces: list[Interface] | None = None, big_endian: bool = False) -> bytes:
    out = io.BytesIO()
    write_pcapng(out, records, interfaces, big_endian)
    return out.getvalue()


def _two_interfaces() -> tuple[list[Interface], list[PacketRecord]]:
    """Ethernet at ns resolution, raw IP at 2^-30 s, interleaved."""
    interfaces = [Interface(ETHERNET, 9, name="eth0"), Interface(RAW, 0x80 | 30, 65535)]
    raw = [PacketRecord(T0 + 3 * i + 1, RAW, _frame(i)[14:], len(_frame(i)) - 14, 1) for i in range(5)]
    eth = _records(5, 1_234_567)
    return interfaces, [r for pair in zip(eth, raw) for r in pair]


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_microsecond_round_trip(big_endian: bool) -> None:
    records = _records(20, 1_001_000)
    parsed, parser = _parse(_pcap(records, big_endian=big_endian))
    assert parsed == records
    assert parser.format == "pcap" and parser.linktypes == [ETHERNET] and parser.pending == 0


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_nanosecond_round_trip(big_endian: bool) -> None:
    records = _records(20, 1_000_000_007, linktype=RAW)
    parsed, parser = _parse(_pcap(records, nanosecond=True, big_endian=big_endian))
    assert parsed == records
    assert parser.linktypes == [RAW]


def test_pcap_microseconds_round_sub_microsecond_times_up() -> None:
    record = PacketRecord(T0 + 1_500, ETHERNET, _frame(0), len(_frame(0)))
    (parsed,), _ = _parse(_pcap([record]))
    assert parsed.ts_ns == T0 + 2_000


def test_pcap_rejects_a_second_link_type() -> None:
    with pytest.raises(ValueError):
        _pcap(_records(1, 1) + _records(1, 1, linktype=RAW))


def test_empty_pcap_has_a_header_and_no_records() -> None:
    parsed, parser = _parse(_pcap([], linktype=RAW))
    assert parsed == [] and parser.linktypes == [RAW] and parser.pending == 0


def test_pcapng_two_interfaces_of_different_link_types_and_resolutions() -> None:
    interfaces, records = _two_interfaces()
    parsed, parser = _parse(_pcapng(records, interfaces))
    assert parsed == records
    assert parser.format == "pcapng" and parser.linktypes == [ETHERNET, RAW]
    assert parser.blocks_skipped == 0 and parser.pending == 0


@pytest.mark.parametrize(
    ("tsresol", "step_ns"),
    [
        (6, 1_000),  # the default (no if_tsresol option written)
        (3, 1_000_000),  # milliseconds
        (9, 1),
        (12, 1),  # picoseconds: finer than nanoseconds (64 bits hold ~213 days of them)
        (0x80 | 10, 1_953_125),  # 2^-10 s: exact on multiples of 1e9/512
        (0x80 | 20, 1_953_125),
        (0x80 | 32, 1),  # finer than a nanosecond: always exact
    ],
)
def test_pcapng_resolutions_round_trip(tsresol: int, step_ns: int) -> None:
    base = 86_400 * 1_000_000_000 if tsresol == 12 else T0
    records = [PacketRecord(base + i * i * step_ns, SLL, b"x" * i, i, 0) for i in range(12)]
    parsed, _ = _parse(_pcapng(records, [Interface(SLL, tsresol)]))
    assert parsed == records


def test_pcapng_default_interfaces_come_from_the_records() -> None:
    _, records = _two_interfaces()
    parsed, parser = _parse(_pcapng(records))
    assert parsed == records and parser.linktypes == [ETHERNET, RAW]


def test_pcapng_big_endian_section() -> None:
    interfaces, records = _two_interfaces()
    data = _pcapng(records, interfaces, big_endian=True)
    assert data[8:12] == bytes.fromhex("1a2b3c4d")
    parsed, _ = _parse(data)
    assert parsed == records


def test_pcapng_two_sections_restart_interfaces() -> None:
    out = io.BytesIO()
    writer = PcapngWriter(out)
    first = _records(3, 10)
    writer.interface(Interface(ETHERNET))
    for record in first:
        writer.packet(record)
    writer.section(big_endian=True)
    writer.interface(Interface(IPV4, 6))
    second = [PacketRecord(T0 + 5_000 * i, IPV4, _frame(i)[14:], len(_frame(i)) - 14, 0) for i in range(3)]
    for record in second:
        writer.packet(record)
    parsed, parser = _parse(out.getvalue())
    assert parsed == first + second
    assert parser.linktypes == [IPV4]


def test_pcapng_writer_rejects_undeclared_interface_and_wrong_link_type() -> None:
    writer = PcapngWriter(io.BytesIO())
    writer.interface(Interface(ETHERNET))
    with pytest.raises(ValueError):
        writer.packet(PacketRecord(T0, ETHERNET, b"", 0, 1))
    with pytest.raises(ValueError):
        writer.packet(PacketRecord(T0, RAW, b"", 0, 0))


# -- chunking -----------------------------------------------------------------------


def _sample_files() -> dict[str, bytes]:
    interfaces, records = _two_interfaces()
    return {
        "pcap": _pcap(_records(30, 777_000)),
        "pcap-ns-be": _pcap(_records(30, 777), nanosecond=True, big_endian=True),
        "pcapng": _pcapng(records, interfaces),
        "pcapng-be": _pcapng(records, interfaces, big_endian=True),
    }


@pytest.mark.parametrize("kind", ["pcap", "pcap-ns-be", "pcapng", "pcapng-be"])
def test_random_chunking_gives_the_same_records(kind: str) -> None:
    data = _sample_files()[kind]
    expected, _ = _parse(data)
    rng = random.Random(kind)
    for max_chunk in (1, 3, 17, 64, len(data)):
        parser = CaptureParser()
        got: list[PacketRecord] = []
        pos = 0
        while pos < len(data):
            size = rng.randint(1, max_chunk)
            got += parser.feed(data[pos : pos + size])
            pos += size
        assert got == expected, max_chunk
        assert parser.pending == 0


def test_read_stream_yields_every_record() -> None:
    data = _sample_files()["pcapng"]
    expected, _ = _parse(data)
    assert list(read_stream(io.BytesIO(data), CaptureParser(), chunk=5)) == expected


# -- statistics, truncation, damage ---------------------------------------------------


def test_isb_drop_counters_are_parsed() -> None:
    out = io.BytesIO()
    writer = PcapngWriter(out)
    writer.interface(Interface(ETHERNET))
    writer.interface(Interface(RAW, 0x80 | 20))
    writer.packet(_records(1, 1)[0])
    writer.statistics(0, received=1000, dropped_interface=5, dropped_os=7, ts_ns=T0)
    writer.statistics(1, dropped_os=3)
    parsed, parser = _parse(out.getvalue())
    assert len(parsed) == 1
    assert parser.interface_drops == {
        0: InterfaceDrops(0, 1000, 5, 7),
        1: InterfaceDrops(1, None, None, 3),
    }


def test_unknown_blocks_are_skipped() -> None:
    records = _records(2, 1)
    data = _pcapng(records)
    custom = struct.pack("<II", 0x00000BAD, 16) + b"abcd" + struct.pack("<I", 16)
    parsed, parser = _parse(data + custom + _pcapng(records)[28:])  # the second file without its SHB
    assert parsed == records + records
    assert parser.blocks_skipped == 1


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_truncated_stream_leaves_pending_bytes(kind: str) -> None:
    data = _sample_files()[kind]
    complete, _ = _parse(data)
    for cut in (1, 5, 17, 30):
        parsed, parser = _parse(data[:-cut])
        assert parsed == complete[:-1]
        assert parser.pending > 0


def test_short_stream_is_pending_before_detection() -> None:
    parser = CaptureParser()
    assert parser.feed(_pcap([])[:10]) == []
    assert parser.format is None and parser.pending == 10


@pytest.mark.parametrize("head", [bytes(24), b"GIF89a" + bytes(18), bytes.fromhex("a1b2c3d5") + bytes(20)])
def test_bad_magic_raises(head: bytes) -> None:
    with pytest.raises(CaptureFormatError):
        CaptureParser().feed(head)


def _corrupt_pcap() -> tuple[bytes, bytes, list[PacketRecord]]:
    good = _records(3, 1000)
    return _pcap(good), struct.pack("<IIII", 1, 0, MAX_RECORD + 1, 60) + bytes(60), good


def _corrupt_pcapng() -> tuple[bytes, bytes, list[PacketRecord]]:
    good = _records(3, 1)
    return _pcapng(good), struct.pack("<II", 6, 30) + bytes(30), good


@pytest.mark.parametrize("make", [_corrupt_pcap, _corrupt_pcapng])
def test_corrupt_length_raises_after_earlier_records(make) -> None:  # type: ignore[no-untyped-def]
    sound, damage, good = make()
    parser = CaptureParser()
    got: list[PacketRecord] = []
    for pos in range(0, len(sound), 50):
        got += parser.feed(sound[pos : pos + 50])
    assert got == good
    with pytest.raises(CaptureFormatError, match="corrupt"):
        parser.feed(damage)


def test_corrupt_stream_in_one_chunk_yields_records_before_the_damage() -> None:
    sound, damage, good = _corrupt_pcap()
    got: list[PacketRecord] = []
    with pytest.raises(CaptureFormatError):
        for record in read_stream(io.BytesIO(sound + damage), CaptureParser()):
            got.append(record)
    assert got == good


def test_pcapng_packet_longer_than_its_block_raises() -> None:
    data = _pcapng(_records(1, 1))
    epb = struct.pack("<IIIIIII", 6, 32 + 4, 0, 0, 0, 100, 100) + bytes(4) + struct.pack("<I", 36)
    with pytest.raises(CaptureFormatError, match="longer than its block"):
        CaptureParser().feed(data + epb)


def test_pcapng_packet_on_undeclared_interface_raises() -> None:
    data = _pcapng(_records(1, 1))
    epb = struct.pack("<IIIIIII", 6, 32, 7, 0, 0, 0, 0) + struct.pack("<I", 32)
    with pytest.raises(CaptureFormatError, match="undeclared interface 7"):
        CaptureParser().feed(data + epb)


def test_pcapng_section_without_byte_order_magic_raises() -> None:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0xDEADBEEF, 1, 0, -1) + struct.pack("<I", 28)
    with pytest.raises(CaptureFormatError, match="byte-order"):
        CaptureParser().feed(shb)



def _short_block(block_type: int, total: int) -> bytes:
    """A block whose length leaves no room for its fixed fields (as a truncated writer leaves it)."""
    return struct.pack("<II", block_type, total) + bytes(total - 12) + struct.pack("<I", total)


SHORT_BLOCKS = [(1, 12, "interface description"), (1, 16, "interface description"), (2, 28, "packet"),
                (3, 12, "simple packet"), (5, 20, "interface statistics"), (6, 28, "packet")]  # fmt: skip


@pytest.mark.parametrize("followed", [False, True], ids=["at-the-end", "mid-stream"])
@pytest.mark.parametrize(("block_type", "total", "name"), SHORT_BLOCKS, ids=[f"type{b}-{t}" for b, t, _ in SHORT_BLOCKS])
def test_pcapng_block_shorter_than_its_fields_raises(block_type: int, total: int, name: str, followed: bool) -> None:
    """Not struct's error from reading past the buffer, nor fields read from the next block."""
    good = _records(2, 1)
    data = _pcapng(good) + _short_block(block_type, total) + (_pcapng(good)[-64:] if followed else b"")
    with pytest.raises(CaptureFormatError, match=rf"corrupt pcapng {name} block at byte \d+: length {total}, "
                                                 r"shorter than its fields") as caught:  # fmt: skip
        CaptureParser().feed(data)
    assert list(caught.value.records) == good


def test_replay_of_a_capture_ending_in_a_truncated_interface_block_warns_and_goes_on(tmp_path: Path) -> None:
    """What an operator sees: the documented warning for a damaged capture, the flows before it, no traceback."""
    capture = tmp_path / "truncated.pcapng"
    capture.write_bytes(_pcapng(_records(3, 1_000_000)) + _short_block(1, 12))
    eve = tmp_path / "eve.json"
    result = subprocess.run([sys.executable, "-m", "netgptd", "replay", "--no-model", "--eve", str(eve), str(capture)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warning = json.loads(result.stderr.strip().splitlines()[-1])
    assert warning["event"] == "capture_truncated" and "interface description block" in warning["detail"]
    assert [json.loads(line)["event_type"] for line in eve.read_text().splitlines()].count("flow") == 3
