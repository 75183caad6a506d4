"""nDPI's reading of a capture that ships without labels (the corpus's ``extra/``).

``ndpiReader -i FILE -v 2`` (Debian's ``libndpi-bin``) prints one line per
flow in the same form as the nDPI test suite's ``result/`` files, which
``labels.ndpi_labeller`` reads. Its output is kept in a cache keyed by the
capture's sha256 and nDPI's version, so a corpus is read once per machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from netgptd.model.bundle import sha256_file

CACHE_ENV = "NETGPTD_NDPI_CACHE"
TIMEOUT_S = 120.0
_VERSION = re.compile(r"Welcome to nDPI (\S+)")


class NdpiReaderError(RuntimeError):
    """ndpiReader is missing, or failed on a capture."""


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netgptd" / "ndpi"


@cache
def ndpi_version() -> str:
    """The installed nDPI's version, as ndpiReader announces it."""
    program = shutil.which("ndpiReader")
    if program is None:
        raise NdpiReaderError("ndpiReader is not installed (Debian package libndpi-bin)")
    done = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=TIMEOUT_S)
    match = _VERSION.search(done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def ndpi_reading(capture: Path) -> Path:
    """The file holding ndpiReader's flow lines for ``capture``, made on first use."""
    version = ndpi_version()
    out = cache_dir() / version / f"{sha256_file(capture)}.out"
    if out.is_file():
        return out
    done = subprocess.run(["ndpiReader", "-i", str(capture), "-v", "2"], capture_output=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        tail = done.stderr.decode("latin-1").strip().splitlines()[-1:] or ["no message"]
        raise NdpiReaderError(f"ndpiReader failed on {capture} (exit {done.returncode}): {tail[0]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(done.stdout)
    partial.replace(out)  # whole files only, even with several readers at once
    return out
