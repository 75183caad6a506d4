"""Capture files (pcap and pcapng) as a capture source."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

from netgptd.capture.pcap_format import CaptureFormatError, CaptureParser
from netgptd.capture.records import CaptureStats, PacketRecord

CHUNK = 4 << 20
HEADER_BYTES = 64 << 10
T = TypeVar("T")  # what capture_file_problem reads: the headers and the first records


class CaptureFileError(Exception):
    """A file that cannot be read as a capture at all (message names it)."""


def new_parser(engine: str) -> CaptureParser:
    """The record parser of ``engine`` (``"compiled"``: the Rust one, same records and errors)."""
    if engine == "compiled":
        from netgptd.hotpath.parser import NativeCaptureParser

        return NativeCaptureParser()  # type: ignore[return-value]
    return CaptureParser()


def read_stream(stream: BinaryIO, parser: CaptureParser, chunk: int = CHUNK) -> Iterator[PacketRecord]:
    """Feed a byte stream through ``parser`` and yield its records.

    Shared by files and by dumpcap's pipe; stops at end of stream. A stream
    that turns corrupt part-way raises CaptureFormatError after yielding
    every record before the damage.
    """
    for records in feed_stream(stream, parser.feed, lambda exc: exc.records, chunk):
        yield from records


def feed_stream(stream: BinaryIO, feed: Callable[[bytes], T], before: Callable[[CaptureFormatError], T],
                chunk: int = CHUNK) -> Iterator[T]:  # fmt: skip
    """What ``feed`` makes of each chunk of the stream; on damage, what ``before`` makes of the error (the
    records before it), then the error."""
    while True:
        data = stream.read(chunk)
        if not data:
            return
        try:
            out = feed(data)
        except CaptureFormatError as exc:
            yield before(exc)
            raise
        yield out


def capture_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be replayed at all (missing, unreadable, not a pcap or pcapng capture), or None.

    Reads the start only: damage further in is the replay's warning, with the
    packets before it kept, not a reason to refuse the file.
    """
    if not path.is_file():
        return f"no such capture file: {path}" if not path.exists() else f"{path}: not a regular file"
    try:
        with open(path, "rb") as stream:
            head = stream.read(HEADER_BYTES)
    except OSError as exc:
        return f"{path}: cannot open: {exc.strerror or exc}"
    parser = CaptureParser()
    try:
        parser.feed(head)
    except CaptureFormatError as exc:
        if parser.format is None:
            return f"{path}: {exc}"
    return None if parser.format is not None else f"{path}: not a pcap or pcapng capture (too short)"


class PcapFileSource:
    """Reads a pcap or pcapng file with the project's own parser (``engine``: ``"python"`` or ``"compiled"``,
    as :func:`netgptd.hotpath.engine` resolved it).

    After iteration, ``truncated`` tells whether the file ended inside a
    record or turned corrupt; ``damage`` says how, for the warning.
    """

    live = False

    def __init__(self, path: str | Path, engine: str = "python") -> None:
        self.path = Path(path)
        self.name = f"pcap:{self.path}"
        self.parser = new_parser(engine)
        self.packets_read = 0
        self.truncated = False
        self.damage = ""
        self._stream: BinaryIO | None = None

    def packets(self) -> Iterator[PacketRecord]:
        for records in self._read(self.parser.feed, lambda exc: exc.records):
            for record in records:
                self.packets_read += 1
                yield record

    def feed(self, consume: Callable[[bytes], tuple[int, int]]) -> None:
        """Read the file into ``consume`` (the compiled parser and flow table: bytes in, (records, bytes) out,
        CaptureFormatError.fed on damage) instead of yielding records; the same errors and ``truncated``."""
        for count, _ in self._read(consume, lambda exc: exc.fed):  # type: ignore[attr-defined]
            self.packets_read += count

    def _read(self, feed: Callable[[bytes], T], before: Callable[[CaptureFormatError], T]) -> Iterator[T]:
        try:
            self._stream = open(self.path, "rb")
        except OSError as exc:
            raise CaptureFileError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            yield from feed_stream(self._stream, feed, before)
        except CaptureFormatError as exc:
            if self.parser.format is None:
                raise CaptureFileError(f"{self.path}: {exc}") from None
            self.truncated, self.damage = True, str(exc)
        except OSError as exc:
            raise CaptureFileError(f"{self.path}: read error: {exc.strerror or exc}") from None
        else:
            if self.parser.format is None:
                raise CaptureFileError(f"{self.path}: not a pcap or pcapng capture (too short)")
            if self.parser.pending:
                self.truncated = True
                self.damage = f"capture ends inside a record ({self.parser.pending} bytes left over)"
        finally:
            self.close()

    def stats(self) -> CaptureStats:
        drops = self.parser.interface_drops.values()
        if not drops:
            return CaptureStats(None, None, None)
        return CaptureStats(
            sum(d.received or 0 for d in drops),
            sum(d.dropped_os or 0 for d in drops),
            sum(d.dropped_interface or 0 for d in drops),
        )

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
