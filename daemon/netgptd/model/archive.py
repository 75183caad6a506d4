"""Bundle archives for rollout: pack a bundle folder, fetch an archive, check it and unpack it.

An archive is a gzipped tar of the bundle's files at its top level (no
folders, no links), so unpacking cannot write outside its target. The
sensor checks the archive's sha256 against the signed announcement before
it opens it, then the bundle against its own manifest (``load_bundle``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from netgptd.model.bundle import Bundle, BundleError, load_bundle

MAX_BYTES = 256 << 20  # an archive larger than this is refused unread (the shipped bundle is ~1 MB)


class ArchiveError(Exception):
    """An archive that cannot be fetched or served; ``reason`` is one of announce.REFUSED."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def pack(bundle_dir: Path, out: Path) -> tuple[Bundle, str, int]:
    """The (checked) bundle at ``bundle_dir`` as an archive at ``out``; returns the bundle, sha256 and size."""
    bundle = load_bundle(bundle_dir)
    files = sorted(p for p in bundle_dir.iterdir() if p.is_file())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            info = tarfile.TarInfo(file.name)
            info.size, info.mode, info.mtime = file.stat().st_size, 0o644, 0
            with open(file, "rb") as f:
                tar.addfile(info, f)
    data = buffer.getvalue()
    out.write_bytes(data)
    return bundle, hashlib.sha256(data).hexdigest(), len(data)


def fetch(url: str, size: int, timeout: float, max_bytes: int = MAX_BYTES) -> bytes:
    """The archive at ``url`` (a path, file:// or http(s)://), read up to ``size`` bytes and one more."""
    if size > max_bytes:
        raise ArchiveError("fetch_failed", f"{url}: announced size {size} bytes is over the limit of {max_bytes}")
    try:
        if "://" not in url:
            with open(url, "rb") as f:
                data = f.read(size + 1)
        else:
            if not url.startswith(("file://", "http://", "https://")):
                raise ArchiveError("fetch_failed", f"{url}: only paths, file://, http:// and https:// are fetched")
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- schemes checked above
                data = response.read(size + 1)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ArchiveError("fetch_failed", f"{url}: cannot fetch: {getattr(exc, 'reason', None) or exc}") from None
    if len(data) != size:
        raise ArchiveError("bad_hash", f"{url}: {len(data) if len(data) <= size else 'more than ' + str(size)} bytes, "
                                       f"announced {size}")  # fmt: skip
    return data


def unpack(data: bytes, sha256: str, into: Path) -> Bundle:
    """The archive ``data``, checked against ``sha256``, unpacked into ``into``/<sha256> and loaded.

    A folder already there (the same archive, unpacked before) is loaded again, so a restart re-serves it
    without a second copy. BundleError and ArchiveError name what is wrong; nothing half-unpacked stays.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArchiveError("bad_hash", f"archive sha256 {actual[:12]}… != announced {sha256[:12]}…: refused")
    target = into / sha256
    if target.is_dir():
        return _loaded(target)
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=into))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or Path(member.name).name != member.name or member.name in ("", ".", ".."):
                    raise ArchiveError("bad_bundle", f"archive entry {member.name!r}: only plain files at the top "
                                                     "level are allowed")  # fmt: skip
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with open(staging / member.name, "wb") as out:
                    shutil.copyfileobj(source, out)
        _loaded(staging)
        os.rename(staging, target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError("bad_bundle", f"archive cannot be unpacked: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _loaded(target)


def _loaded(folder: Path) -> Bundle:
    try:
        return load_bundle(folder)
    except BundleError as exc:
        raise ArchiveError("bad_bundle", str(exc)) from None
