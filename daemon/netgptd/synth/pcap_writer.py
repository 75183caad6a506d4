"""Capture-file writers: classic pcap and pcapng, from ``PacketRecord``s.

What they write reads back through ``CaptureParser`` record for record:
timestamps are stored as the first tick at or after ``ts_ns``, so they
come back exactly wherever the resolution can express them.
"""

from __future__ import annotations

import itertools
import struct
from typing import BinaryIO, Iterable, NamedTuple

from netgptd.capture.pcap_format import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    IDB_OPT_TSRESOL,
    ISB_OPT_IFDROP,
    ISB_OPT_IFRECV,
    ISB_OPT_OSDROP,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BOM,
    PCAPNG_SHB,
)
from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import LINKTYPE_ETHERNET

NS = 1_000_000_000
PCAP_SNAPLEN = 262144
TSRESOL_US = 6  # pcapng's default
TSRESOL_NS = 9
IDB_OPT_NAME = 2


class Interface(NamedTuple):
    """A pcapng interface; ``tsresol`` is the ``if_tsresol`` code (6: µs,
    9: ns, 0x80 | n: 2^-n seconds)."""

    linktype: int
    tsresol: int = TSRESOL_NS
    snaplen: int = 0
    name: str = ""


def _ticks(ts_ns: int, mul: int, div: int) -> int:
    """The first tick at or after ``ts_ns`` for a clock of ``mul/div`` ns per tick."""
    return -(-ts_ns * div // mul)


def _resolution(code: int) -> tuple[int, int]:
    """(mul, div): nanoseconds per tick as a fraction, as the parser reads ``code``."""
    if code & 0x80:
        return NS, 1 << (code & 0x7F)
    exp = 9 - code
    return (10**exp, 1) if exp >= 0 else (1, 10**-exp)


def write_pcap(
    stream: BinaryIO,
    records: Iterable[PacketRecord],
    linktype: int | None = None,
    nanosecond: bool = False,
    snaplen: int = PCAP_SNAPLEN,
    big_endian: bool = False,
) -> None:
    """Write a classic pcap file; its link type is ``linktype``, else that of
    the first record (Ethernet when there is none), and every record must share it."""
    endian = ">" if big_endian else "<"
    records = iter(records)
    first = next(records, None)
    if linktype is None:
        linktype = first.linktype if first is not None else LINKTYPE_ETHERNET
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    stream.write(struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    if first is None:
        return
    record_header = struct.Struct(endian + "IIII")
    per_tick = 1 if nanosecond else 1000
    for record in itertools.chain((first,), records):
        if record.linktype != linktype:
            raise ValueError(f"a pcap file has one link type ({linktype}), not {record.linktype}")
        sec, frac = divmod(_ticks(record.ts_ns, per_tick, 1), NS // per_tick)
        stream.write(record_header.pack(sec, frac, len(record.data), record.orig_len))
        stream.write(record.data)


class PcapngWriter:
    """Writes pcapng blocks: a section header at once, then interfaces,
    packets, statistics and further sections as called."""

    def __init__(self, stream: BinaryIO, big_endian: bool = False) -> None:
        self.stream = stream
        self._endian = "<"
        self._interfaces: list[tuple[int, int, int]] = []  # (linktype, mul, div)
        self.section(big_endian)

    def section(self, big_endian: bool = False) -> None:
        """Start a section (its own byte order); interface ids restart at 0."""
        self._endian = ">" if big_endian else "<"
        self._interfaces = []
        body = struct.pack(self._endian + "IHHq", PCAPNG_BOM, 1, 0, -1)
        self._block(PCAPNG_SHB, body)

    def interface(self, iface: Interface) -> int:
        """Declare an interface; returns its id within the section."""
        options = b""
        if iface.tsresol != TSRESOL_US:
            options += self._option(IDB_OPT_TSRESOL, bytes((iface.tsresol,)))
        if iface.name:
            options += self._option(IDB_OPT_NAME, iface.name.encode())
        body = struct.pack(self._endian + "HxxI", iface.linktype, iface.snaplen) + self._options(options)
        self._block(BLOCK_IDB, body)
        self._interfaces.append((iface.linktype, *_resolution(iface.tsresol)))
        return len(self._interfaces) - 1

    def packet(self, record: PacketRecord) -> None:
        """An enhanced packet block on the record's interface (declared, of its link type)."""
        if record.interface >= len(self._interfaces):
            raise ValueError(f"interface {record.interface} is not declared in this section")
        linktype, mul, div = self._interfaces[record.interface]
        if record.linktype != linktype:
            raise ValueError(f"interface {record.interface} has link type {linktype}, not {record.linktype}")
        ticks = _ticks(record.ts_ns, mul, div)
        data = record.data
        body = struct.pack(
            self._endian + "IIIII", record.interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), record.orig_len
        ) + data + bytes(-len(data) % 4)  # fmt: skip
        self._block(BLOCK_EPB, body)

    def statistics(
        self,
        interface: int,
        received: int | None = None,
        dropped_interface: int | None = None,
        dropped_os: int | None = None,
        ts_ns: int = 0,
    ) -> None:
        """An interface statistics block with the counters given."""
        _, mul, div = self._interfaces[interface]
        ticks = _ticks(ts_ns, mul, div)
        options = b""
        for code, value in ((ISB_OPT_IFRECV, received), (ISB_OPT_IFDROP, dropped_interface), (ISB_OPT_OSDROP, dropped_os)):
            if value is not None:
                options += self._option(code, struct.pack(self._endian + "Q", value))
        body = struct.pack(self._endian + "III", interface, ticks >> 32, ticks & 0xFFFFFFFF) + self._options(options)
        self._block(BLOCK_ISB, body)

    def _option(self, code: int, value: bytes) -> bytes:
        return struct.pack(self._endian + "HH", code, len(value)) + value + bytes(-len(value) % 4)

    def _options(self, options: bytes) -> bytes:
        """An option list closed by opt_endofopt (nothing when there are none)."""
        return options + bytes(4) if options else b""

    def _block(self, block_type: int, body: bytes) -> None:
        total = struct.pack(self._endian + "I", 12 + len(body))
        self.stream.write(struct.pack(self._endian + "I", block_type) + total + body + total)


def write_pcapng(
    stream: BinaryIO,
    records: Iterable[PacketRecord],
    interfaces: Iterable[Interface] | None = None,
    big_endian: bool = False,
) -> None:
    """Write a one-section pcapng file. Without ``interfaces``, interface
    ``i`` is declared at nanosecond resolution with the link type of the
    first record on it, the records being read first; ids must run from 0."""
    records = list(records)
    if interfaces is None:
        linktypes: dict[int, int] = {}
        for record in records:
            linktypes.setdefault(record.interface, record.linktype)
        if sorted(linktypes) != list(range(len(linktypes))):
            raise ValueError(f"interface ids must run from 0: {sorted(linktypes)}")
        interfaces = [Interface(linktypes[i]) for i in range(len(linktypes))]
    writer = PcapngWriter(stream, big_endian)
    for iface in interfaces:
        writer.interface(iface)
    for record in records:
        writer.packet(record)
