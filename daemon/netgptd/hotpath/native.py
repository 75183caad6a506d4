"""ctypes binding of the compiled hot path's C ABI (``hotpath/src/lib.rs``)."""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from functools import cache
from pathlib import Path

# Where a development build can be pointed at (tests, bench); installs find the library beside this file.
LIBRARY_ENV = "NETGPTD_HOTPATH_LIB"
DECODED_FIELDS = 15  # lib.rs DECODED_FIELDS
RECORD_FIELDS = 7  # lib.rs RECORD_FIELDS
STATUS_LINKTYPE = -1000

_i64p = ctypes.POINTER(ctypes.c_int64)
_u64p = ctypes.POINTER(ctypes.c_uint64)


def _candidates() -> list[Path]:
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return [Path(explicit)]
    here = Path(__file__).parent
    return [here / f"_native{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]


@cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    paths = [p for p in _candidates() if p.is_file()]
    if not paths:
        return None, "not built (no Rust toolchain when netgptd was installed?)"
    try:
        lib = ctypes.CDLL(str(paths[0]))
    except OSError as exc:
        return None, f"{paths[0]}: {exc}"
    lib.ngp_decode_batch.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_size_t, ctypes.c_void_p]  # fmt: skip
    lib.ngp_decode_batch.restype = ctypes.c_int32
    lib.ngp_parser_new.argtypes = []
    lib.ngp_parser_new.restype = ctypes.c_void_p
    lib.ngp_parser_free.argtypes = [ctypes.c_void_p]
    lib.ngp_parser_free.restype = None
    lib.ngp_parser_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
    lib.ngp_parser_feed.restype = ctypes.c_int64
    lib.ngp_parser_records.argtypes = [ctypes.c_void_p]
    lib.ngp_parser_records.restype = ctypes.c_void_p
    lib.ngp_parser_error.argtypes = [ctypes.c_void_p, _u64p]
    lib.ngp_parser_error.restype = ctypes.c_int32
    lib.ngp_parser_format.argtypes = [ctypes.c_void_p]
    lib.ngp_parser_format.restype = ctypes.c_int32
    lib.ngp_parser_blocks_skipped.argtypes = [ctypes.c_void_p]
    lib.ngp_parser_blocks_skipped.restype = ctypes.c_uint64
    lib.ngp_parser_linktypes.argtypes = [ctypes.c_void_p, _u64p, ctypes.c_size_t]
    lib.ngp_parser_linktypes.restype = ctypes.c_size_t
    lib.ngp_parser_drops.argtypes = [ctypes.c_void_p, _u64p, ctypes.c_size_t]
    lib.ngp_parser_drops.restype = ctypes.c_size_t
    lib.ngp_engine_new.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_double, ctypes.c_double, ctypes.c_uint64,
                                   ctypes.c_uint64, ctypes.c_int32, ctypes.c_uint64, ctypes.c_uint64]  # fmt: skip
    lib.ngp_engine_new.restype = ctypes.c_void_p
    lib.ngp_engine_free.argtypes = [ctypes.c_void_p]
    lib.ngp_engine_free.restype = None
    lib.ngp_engine_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]  # fmt: skip
    lib.ngp_engine_feed.restype = ctypes.c_int32
    lib.ngp_engine_feed_capture.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                            ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_uint64)]  # fmt: skip
    lib.ngp_engine_feed_capture.restype = ctypes.c_int64
    lib.ngp_engine_advance.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64]
    lib.ngp_engine_advance.restype = None
    lib.ngp_engine_flush.argtypes = [ctypes.c_void_p]
    lib.ngp_engine_flush.restype = None
    lib.ngp_engine_set_buffers.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int32]
    lib.ngp_engine_set_buffers.restype = None
    lib.ngp_engine_verdict.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.ngp_engine_verdict.restype = None
    lib.ngp_engine_events.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    lib.ngp_engine_events.restype = ctypes.c_void_p
    lib.ngp_engine_stats.argtypes = [ctypes.c_void_p, _u64p]
    lib.ngp_engine_stats.restype = None
    lib.ngp_engine_linktypes.argtypes = [ctypes.c_void_p, _u64p, ctypes.c_size_t]
    lib.ngp_engine_linktypes.restype = ctypes.c_size_t
    return lib, None


def library() -> ctypes.CDLL:
    """The loaded library (call :func:`load_problem` first where it may be missing)."""
    lib, problem = _load()
    if lib is None:
        raise RuntimeError(f"compiled hot path: {problem}")
    return lib


def load_problem() -> str | None:
    """Why the compiled library cannot be used, or None."""
    return _load()[1]
