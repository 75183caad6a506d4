"""Sans-I/O parser for pcap and pcapng byte streams.

Fed bytes in any chunking (a whole file, or a pipe from dumpcap), it returns
the packet records completed so far. It reads classic pcap (micro- and
nanosecond magics, both byte orders, Kuznetzov's modified records) and
pcapng (several sections and interfaces, per-interface ``if_tsresol`` and
``if_tsoffset``, enhanced, simple and obsolete packet blocks, interface
statistics blocks for drop counts). Unknown block types are skipped.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from netgptd.capture.records import PacketRecord

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_MAGIC_KUZNETZOV = 0xA1B2CD34
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

BLOCK_IDB = 1
BLOCK_OPB = 2
BLOCK_SPB = 3
BLOCK_ISB = 5
BLOCK_EPB = 6

# The shortest each block can be (type, length, fixed fields, trailing length): a
# shorter one is corrupt, and its fields would be read from the next block.
BLOCK_MIN = {PCAPNG_SHB: 28, BLOCK_IDB: 20, BLOCK_OPB: 32, BLOCK_SPB: 16, BLOCK_ISB: 24, BLOCK_EPB: 32}
BLOCK_NAMES = {PCAPNG_SHB: "section header", BLOCK_IDB: "interface description", BLOCK_OPB: "packet",
               BLOCK_SPB: "simple packet", BLOCK_ISB: "interface statistics", BLOCK_EPB: "packet"}  # fmt: skip

OPT_END = 0
IDB_OPT_TSRESOL = 9
IDB_OPT_TSOFFSET = 14
ISB_OPT_IFRECV = 4
ISB_OPT_IFDROP = 5
ISB_OPT_OSDROP = 7

# Larger than any real snap length (pcap's is 262144); a record claiming more
# means the file is corrupt, and a classic pcap cannot be resynchronised.
MAX_RECORD = 1 << 24

_new_record = tuple.__new__


class CaptureFormatError(ValueError):
    """The bytes are not a pcap/pcapng stream, or are corrupt beyond repair.

    ``records`` holds the whole records ``feed`` parsed before the damage.
    """

    records: tuple[PacketRecord, ...] | list[PacketRecord] = ()


class InterfaceDrops(NamedTuple):
    """Counters from a pcapng interface statistics block."""

    interface: int
    received: int | None
    dropped_interface: int | None
    dropped_os: int | None


class _Interface:
    __slots__ = ("linktype", "snaplen", "ts_mul", "ts_div", "ts_offset_ns")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.ts_mul = 1000  # default resolution: microseconds
        self.ts_div = 1
        self.ts_offset_ns = 0

    def set_resolution(self, code: int) -> None:
        if code & 0x80:  # power of two
            self.ts_mul, self.ts_div = 1_000_000_000, 1 << (code & 0x7F)
        else:
            exp = 9 - code
            if exp >= 0:
                self.ts_mul, self.ts_div = 10**exp, 1
            else:
                self.ts_mul, self.ts_div = 1, 10**-exp

    def to_ns(self, ticks: int) -> int:
        if self.ts_div == 1:
            return ticks * self.ts_mul + self.ts_offset_ns
        return ticks * self.ts_mul // self.ts_div + self.ts_offset_ns


def _options(buf: bytes, off: int, end: int, endian: str) -> dict[int, bytes]:
    """Parse a pcapng option list; later duplicates of a code are ignored."""
    opts: dict[int, bytes] = {}
    unpack = struct.Struct(endian + "HH").unpack_from
    while off + 4 <= end:
        code, length = unpack(buf, off)
        if code == OPT_END:
            break
        value = buf[off + 4 : min(off + 4 + length, end)]
        opts.setdefault(code, value)
        off += 4 + ((length + 3) & ~3)
    return opts


class CaptureParser:
    """Incremental pcap/pcapng parser: ``feed`` bytes, get records back."""

    def __init__(self) -> None:
        self._buf = b""
        self._format: str | None = None  # "pcap" or "pcapng"
        self._endian = "<"
        # classic pcap state
        self._pcap_hdr: struct.Struct | None = None
        self._pcap_linktype = 0
        self._pcap_ts_mul = 1000
        self._pcap_extra = 0
        self._pcap_header_done = False
        # pcapng state
        self._interfaces: list[_Interface] = []
        self.interface_drops: dict[int, InterfaceDrops] = {}
        self.blocks_skipped = 0

    @property
    def format(self) -> str | None:
        return self._format

    @property
    def linktypes(self) -> list[int]:
        """Link types seen so far (one for pcap, one per interface for pcapng)."""
        if self._format == "pcap":
            return [self._pcap_linktype]
        return [i.linktype for i in self._interfaces]

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a whole record (at EOF: truncation)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[PacketRecord]:
        buf = self._buf + data if self._buf else bytes(data)
        out: list[PacketRecord] = []
        if self._format is None:
            if len(buf) < 24:
                self._buf = buf
                return out
            self._detect(buf)
        try:
            if self._format == "pcap":
                off = self._feed_pcap(buf, out)
            else:
                off = self._feed_pcapng(buf, out)
        except CaptureFormatError as exc:
            exc.records = out  # the records before the damage are good: the caller keeps them
            raise
        self._buf = buf[off:]
        return out

    # -- format detection ------------------------------------------------

    def _detect(self, buf: bytes) -> None:
        magic_le = struct.unpack_from("<I", buf, 0)[0]
        magic_be = struct.unpack_from(">I", buf, 0)[0]
        if magic_le == PCAPNG_SHB:
            self._format = "pcapng"
            return
        for endian, magic in (("<", magic_le), (">", magic_be)):
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_KUZNETZOV):
                self._format = "pcap"
                self._endian = endian
                self._pcap_ts_mul = 1 if magic == PCAP_MAGIC_NS else 1000
                self._pcap_extra = 8 if magic == PCAP_MAGIC_KUZNETZOV else 0
                self._pcap_hdr = struct.Struct(endian + "IIII")
                return
        raise CaptureFormatError(f"not a pcap or pcapng capture (magic 0x{magic_be:08x})")

    # -- classic pcap ------------------------------------------------------

    def _feed_pcap(self, buf: bytes, out: list[PacketRecord]) -> int:
        off = 0
        n = len(buf)
        if not self._pcap_header_done:
            if n < 24:
                return 0
            linktype = struct.unpack_from(self._endian + "I", buf, 20)[0]
            # The upper bits may carry FCS length flags (pcap-linktype(7)).
            self._pcap_linktype = linktype & 0x0FFFFFFF
            self._pcap_header_done = True
            off = 24
        assert self._pcap_hdr is not None
        unpack = self._pcap_hdr.unpack_from
        hdr_len = 16 + self._pcap_extra
        mul = self._pcap_ts_mul
        linktype = self._pcap_linktype
        append = out.append
        while off + hdr_len <= n:
            sec, frac, incl, orig = unpack(buf, off)
            start = off + hdr_len
            end = start + incl
            if incl > MAX_RECORD:
                raise CaptureFormatError(f"corrupt pcap record at byte {off}: length {incl}")
            if end > n:
                break
            append(_new_record(PacketRecord, (sec * 1_000_000_000 + frac * mul, linktype, buf[start:end], orig, 0)))
            off = end
        return off

    # -- pcapng ------------------------------------------------------------

    def _feed_pcapng(self, buf: bytes, out: list[PacketRecord]) -> int:
        off = 0
        n = len(buf)
        append = out.append
        interfaces = self._interfaces
        block_head = struct.Struct(self._endian + "II").unpack_from
        epb_head = struct.Struct(self._endian + "IIIIIII").unpack_from
        while off + 12 <= n:
            block_type, total = block_head(buf, off)
            if block_type == PCAPNG_SHB:  # the same bytes in either byte order
                self._section(buf, off)
                interfaces = self._interfaces
                block_head = struct.Struct(self._endian + "II").unpack_from
                epb_head = struct.Struct(self._endian + "IIIIIII").unpack_from
                block_type, total = block_head(buf, off)
            if total < 12 or total & 3 or total > MAX_RECORD:
                raise CaptureFormatError(f"corrupt pcapng block at byte {off}: length {total}")
            if total < BLOCK_MIN.get(block_type, 12):
                raise CaptureFormatError(f"corrupt pcapng {BLOCK_NAMES[block_type]} block at byte {off}: length "
                                         f"{total}, shorter than its fields ({BLOCK_MIN[block_type]})")  # fmt: skip
            end = off + total
            if end > n:
                break
            if block_type == BLOCK_EPB:
                _, _, if_id, ts_hi, ts_lo, caplen, origlen = epb_head(buf, off)
                if caplen > total - 32:
                    raise CaptureFormatError(f"pcapng packet at byte {off} is longer than its block")
                if if_id >= len(interfaces):
                    raise CaptureFormatError(f"pcapng packet at byte {off} names undeclared interface {if_id}")
                iface = interfaces[if_id]
                append(_new_record(PacketRecord, (
                    iface.to_ns((ts_hi << 32) | ts_lo), iface.linktype, buf[off + 28 : off + 28 + caplen], origlen, if_id,
                )))  # fmt: skip
            elif block_type == BLOCK_IDB:
                self._idb(buf, off + 8, end - 4)
            elif block_type == BLOCK_SPB:
                self._spb(buf, off + 8, end - 4, append)
            elif block_type == BLOCK_OPB:
                self._opb(buf, off + 8, end - 4, append)
            elif block_type == BLOCK_ISB:
                self._isb(buf, off + 8, end - 4)
            elif block_type != PCAPNG_SHB:
                self.blocks_skipped += 1
            off = end
        return off

    def _section(self, buf: bytes, off: int) -> None:
        """A section header block: a new byte order, no interfaces yet."""
        if struct.unpack_from("<I", buf, off + 8)[0] == PCAPNG_BOM:
            self._endian = "<"
        elif struct.unpack_from(">I", buf, off + 8)[0] == PCAPNG_BOM:
            self._endian = ">"
        else:
            raise CaptureFormatError(f"pcapng section header at byte {off} has no byte-order magic")
        self._interfaces = []

    def _iface(self, index: int, at: int) -> _Interface:
        if index >= len(self._interfaces):
            raise CaptureFormatError(f"pcapng packet at byte {at} names undeclared interface {index}")
        return self._interfaces[index]

    def _idb(self, buf: bytes, body: int, end: int) -> None:
        linktype, _, snaplen = struct.unpack_from(self._endian + "HHI", buf, body)
        iface = _Interface(linktype, snaplen)
        opts = _options(buf, body + 8, end, self._endian)
        if IDB_OPT_TSRESOL in opts and opts[IDB_OPT_TSRESOL]:
            iface.set_resolution(opts[IDB_OPT_TSRESOL][0])
        if len(opts.get(IDB_OPT_TSOFFSET, b"")) == 8:
            iface.ts_offset_ns = struct.unpack(self._endian + "q", opts[IDB_OPT_TSOFFSET])[0] * 1_000_000_000
        self._interfaces.append(iface)

    def _opb(self, buf: bytes, body: int, end: int, append) -> None:  # type: ignore[no-untyped-def]
        if_id, _drops, ts_hi, ts_lo, caplen, origlen = struct.unpack_from(self._endian + "HHIIII", buf, body)
        data_at = body + 20
        if data_at + caplen > end:
            raise CaptureFormatError(f"pcapng packet at byte {body - 8} is longer than its block")
        iface = self._iface(if_id, body - 8)
        ts = iface.to_ns((ts_hi << 32) | ts_lo)
        append(_new_record(PacketRecord, (ts, iface.linktype, buf[data_at : data_at + caplen], origlen, if_id)))

    def _spb(self, buf: bytes, body: int, end: int, append) -> None:  # type: ignore[no-untyped-def]
        (origlen,) = struct.unpack_from(self._endian + "I", buf, body)
        iface = self._iface(0, body - 8)
        caplen = min(origlen, end - body - 4)
        if iface.snaplen:
            caplen = min(caplen, iface.snaplen)
        # A simple packet block has no timestamp; 0 marks "unknown".
        append(_new_record(PacketRecord, (0, iface.linktype, buf[body + 4 : body + 4 + caplen], origlen, 0)))

    def _isb(self, buf: bytes, body: int, end: int) -> None:
        (if_id,) = struct.unpack_from(self._endian + "I", buf, body)
        opts = _options(buf, body + 12, end, self._endian)

        def counter(code: int) -> int | None:
            value = opts.get(code)
            return struct.unpack(self._endian + "Q", value)[0] if value and len(value) == 8 else None

        self.interface_drops[if_id] = InterfaceDrops(
            if_id, counter(ISB_OPT_IFRECV), counter(ISB_OPT_IFDROP), counter(ISB_OPT_OSDROP)
        )
