"""The compiled pcap/pcapng parser behind :class:`netgptd.capture.pcap_format.CaptureParser`'s interface:
the same records, drop counters and errors (worded the same), one call into Rust per feed."""

from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING

from netgptd.capture.pcap_format import BLOCK_MIN, BLOCK_NAMES, CaptureFormatError, InterfaceDrops
from netgptd.capture.records import PacketRecord
from netgptd.hotpath.native import RECORD_FIELDS, library

if TYPE_CHECKING:
    from netgptd.hotpath.flows import CompiledFlowTable

_FORMATS = {0: None, 1: "pcap", 2: "pcapng"}
_new_record = tuple.__new__
_records = struct.Struct(f"=Q{RECORD_FIELDS - 1}q").iter_unpack


def _message(code: int, at: int, a: int, b: int) -> str:
    """hotpath/src/pcap.rs's error codes in CaptureParser's words."""
    if code == 1:
        return f"not a pcap or pcapng capture (magic 0x{a:08x})"
    if code == 2:
        return f"corrupt pcap record at byte {at}: length {a}"
    if code == 3:
        return f"corrupt pcapng block at byte {at}: length {a}"
    if code == 4:
        return (f"corrupt pcapng {BLOCK_NAMES[b]} block at byte {at}: length {a}, shorter than its fields "
                f"({BLOCK_MIN[b]})")  # fmt: skip
    if code == 5:
        return f"pcapng packet at byte {at} is longer than its block"
    if code == 6:
        return f"pcapng packet at byte {at} names undeclared interface {a}"
    if code == 7:
        return f"pcapng section header at byte {at} has no byte-order magic"
    return "internal error in the compiled capture parser"


class NativeCaptureParser:
    """Incremental pcap/pcapng parser in Rust: ``feed`` bytes, get ``PacketRecord``s back."""

    def __init__(self) -> None:
        self._lib = library()
        self._handle = self._lib.ngp_parser_new()
        self._buf = b""
        self._consumed = ctypes.c_size_t()
        self._error = (ctypes.c_uint64 * 4)()

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.ngp_parser_free(handle)

    @property
    def format(self) -> str | None:
        return _FORMATS[self._lib.ngp_parser_format(self._handle)]

    @property
    def linktypes(self) -> list[int]:
        out = (ctypes.c_uint64 * 64)()
        n = self._lib.ngp_parser_linktypes(self._handle, out, 64)
        if n > 64:
            out = (ctypes.c_uint64 * n)()
            n = self._lib.ngp_parser_linktypes(self._handle, out, n)
        return list(out[:n])

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def blocks_skipped(self) -> int:
        return self._lib.ngp_parser_blocks_skipped(self._handle)

    @property
    def interface_drops(self) -> dict[int, InterfaceDrops]:
        n = self._lib.ngp_parser_drops(self._handle, None, 0)
        out = (ctypes.c_uint64 * (5 * n))()
        self._lib.ngp_parser_drops(self._handle, out, n)
        drops = {}
        for i in range(n):
            interface, bits, received, dropped_interface, dropped_os = out[5 * i : 5 * i + 5]
            drops[interface] = InterfaceDrops(interface, received if bits & 1 else None,
                                              dropped_interface if bits & 2 else None,
                                              dropped_os if bits & 4 else None)  # fmt: skip
        return drops

    def feed_table(self, data: bytes, table: CompiledFlowTable) -> tuple[int, int]:
        """Parse ``data`` and track its records in ``table`` without making them Python objects: (records,
        their original lengths' sum). A corrupt record raises CaptureFormatError, whose ``fed`` says the same
        of the records before it, all tracked."""
        buf = self._buf + data if self._buf else bytes(data)
        wire = ctypes.c_uint64()
        n = self._lib.ngp_engine_feed_capture(table.engine, self._handle, buf, len(buf), ctypes.byref(self._consumed),
                                              ctypes.byref(wire))  # fmt: skip
        table.take_events()
        self._raise_error(fed=(n, wire.value))
        self._buf = buf[self._consumed.value :]
        return n, wire.value

    def _raise_error(self, records: list[PacketRecord] | None = None, fed: tuple[int, int] = (0, 0)) -> None:
        code = self._lib.ngp_parser_error(self._handle, self._error)
        if code:
            exc = CaptureFormatError(_message(*self._error))
            if code != 1:  # as CaptureParser: records of a stream that never was a capture stay the default
                exc.records = records if records is not None else []
            exc.fed = fed  # type: ignore[attr-defined]
            raise exc

    def feed(self, data: bytes) -> list[PacketRecord]:
        buf = self._buf + data if self._buf else bytes(data)
        n = self._lib.ngp_parser_feed(self._handle, buf, len(buf), ctypes.byref(self._consumed))
        out: list[PacketRecord] = []
        if n:
            flat = ctypes.string_at(self._lib.ngp_parser_records(self._handle), 8 * RECORD_FIELDS * n)
            append = out.append
            for ts_lo, ts_hi, linktype, start, length, orig_len, interface in _records(flat):
                append(_new_record(PacketRecord, (ts_lo if ts_hi == 0 else (ts_hi << 64) + ts_lo, linktype,
                                                  buf[start : start + length], orig_len, interface)))  # fmt: skip
        self._raise_error(out)
        self._buf = buf[self._consumed.value :]
        return out
