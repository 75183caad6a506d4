"""Whole lines out: a line is in the file whole, or not at all.

Lines gather in memory and go out with one ``write`` per flush (the caller
decides when: a size, a delay). A write the disk cannot take whole (a
short write, then ENOSPC) is cut back with ``ftruncate`` to the end of the
last line written whole, so no reader, and no later flush, finds half a
line glued to the next one. The lines that did not fit are counted as lost
and not kept: memory stays bounded however long the disk stays full.

Every line must end in ``\\n`` and hold no other (compact JSON does not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from netgptd.files import open_append


class LineFile:
    """Appends lines to ``path`` (opened with :func:`netgptd.files.open_append`: OSError if it cannot be)."""

    def __init__(self, path: Path, truncate: bool = False) -> None:
        self.path = path
        self._fd = open_append(path, truncate)
        self._lines: list[bytes] = []
        self.buffered = 0  # bytes waiting for the next flush
        self.written = 0  # lines
        self.lost = 0  # lines that could not be written

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        self.buffered += len(line)

    def flush(self) -> OSError | None:
        """Write what waits; the error that stopped the write (what it left out counted as lost), or None."""
        data, count = b"".join(self._lines), len(self._lines)
        self._lines.clear()
        self.buffered = 0
        start = done = 0
        try:
            start = os.fstat(self._fd).st_size  # O_APPEND writes land here
            view = memoryview(data)
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            whole = data.rfind(b"\n", 0, done) + 1
            if whole < done:
                try:
                    os.ftruncate(self._fd, start + whole)
                except OSError:
                    pass  # nothing more to try; the error below says why the write failed
            kept = data.count(b"\n", 0, whole)
            self.written += kept
            self.lost += count - kept
            return exc
        self.written += count
        return None

    def reopen(self) -> None:
        """Write to ``path`` afresh (logrotate moved the file away); OSError keeps the file in use.

        Flush first: what waits goes to the file it was meant for.
        """
        old, self._fd = self._fd, open_append(self.path)
        if old != self._fd:  # the same number: the old one had been closed already
            try:
                os.close(old)
            except OSError:
                pass  # broken (that may be why we reopen): the new one replaces it

    def close(self) -> None:
        os.close(self._fd)


class StreamLines:
    """The same for a text stream (stdout), shared with other writers: lines are written as they come,
    and ``flush`` flushes the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.buffered = 0
        self.written = 0
        self.lost = 0

    def add(self, line: bytes) -> None:
        self.stream.write(line.decode())
        self.buffered += len(line)
        self.written += 1

    def flush(self) -> OSError | None:
        self.buffered = 0
        try:
            self.stream.flush()
        except OSError as exc:
            return exc
        return None

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        self.stream.flush()
