"""The compiled hot path (Rust, ``hotpath/`` at the repository root): capture-record parsing, frame decoding
and the flow table.

Built by ``pip install`` (setuptools-rust, cargo) into ``_native*.so`` beside this file and loaded with
ctypes (:mod:`netgptd.hotpath.native`): :mod:`.parser` (records), :mod:`.decode` (frames to packets in
batches: the packet-level check of the decoder and the bench's), :mod:`.flows` (decoder and flow table,
flow records out). Where it was not built (no Rust toolchain at install), the pure Python parser, decoder
and flow table do the same work: :func:`engine` logs that once, and the ingest stats say which engine runs
(``engine``, ``hotpath_fallback``). The Python modules stay the reference: the differential tests
(tests/test_hotpath.py) require both to give the same records, packets, counters and flows.
"""

from __future__ import annotations

import structlog

from netgptd.hotpath.native import load_problem

log = structlog.get_logger(__name__)

ENGINES = ("auto", "compiled", "python")
_warned = False


class EngineError(RuntimeError):
    """The compiled engine was asked for by name and is not there."""


def engine(setting: str = "auto") -> str:
    """The engine to run for ``setting`` (``auto``: compiled where built): ``"compiled"`` or ``"python"``.

    ``auto`` without the compiled library logs one warning per process; ``compiled`` without it is an
    error (a configuration that asked for it should not silently run slower).
    """
    global _warned
    if setting == "python":
        return "python"
    problem = load_problem()
    if problem is None:
        return "compiled"
    if setting == "compiled":
        raise EngineError(f"the compiled hot path is not available: {problem}")
    if not _warned:
        _warned = True
        log.warning("hotpath_fallback", detail=f"compiled hot path not available ({problem}): "
                    "parsing, decoding and flow tracking run in Python, several times slower")  # fmt: skip
    return "python"
