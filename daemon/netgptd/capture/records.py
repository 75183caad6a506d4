"""The record every capture source yields, and the interface they share."""

from __future__ import annotations

from typing import Iterator, NamedTuple, Protocol


class PacketRecord(NamedTuple):
    """One captured frame, as it came off the wire or out of a file.

    ``ts_ns`` is nanoseconds since the Unix epoch (pcapng can carry that
    resolution, and a float of seconds cannot); ``linktype`` is the
    LINKTYPE_* value of the interface the frame was captured on.
    """

    ts_ns: int
    linktype: int
    data: bytes
    orig_len: int
    interface: int = 0


class CaptureStats(NamedTuple):
    """Drop counters a source can report (None where the source cannot know)."""

    received: int | None
    dropped_kernel: int | None
    dropped_interface: int | None


class CaptureSource(Protocol):
    """Anything that yields packet records: a file, pyshark, dumpcap."""

    name: str
    # Live sources may wait for packets without end; their close() may be
    # called from another thread to end packets(). A file never waits.
    live: bool

    def packets(self) -> Iterator[PacketRecord]:
        """Yield records until the source ends (file end, stop, error)."""

    def stats(self) -> CaptureStats:
        """Drops as reported by the kernel or the capture tool so far."""

    def close(self) -> None:
        """Release files, sockets and child processes; idempotent."""
