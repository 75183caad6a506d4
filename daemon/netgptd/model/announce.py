"""Model rollout announcements: which bundle a fleet should serve, signed with Ed25519.

An announcement is a JSON object: ``name`` and ``version`` (the bundle's
manifest), ``url`` (where the bundle archive is: a path, ``file://`` or
``http(s)://``), ``sha256`` and ``size`` of that archive, and ``sig``: the
hex Ed25519 signature of the canonical form of every other field (as the ask
channel's, :func:`netgptd.cloud.signing.canonical`). The archive's hash is
signed, so the archive itself needs no signature of its own.

Ed25519, not the ask channel's HMAC: a sensor holds only the public key,
so a sensor taken over cannot sign a bundle for the others (its site broker
lets it publish on the announcement topic). The signing and the check run
the ``openssl`` command (3.0 or later, on every Debian), so no Python crypto
package is needed. Make a key pair with::

    openssl genpkey -algorithm ed25519 -out rollout.key
    openssl pkey -in rollout.key -pubout -out rollout.pub
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

from netgptd.cloud.signing import canonical

FIELDS = {"name": str, "version": str, "url": str, "sha256": str, "size": int}
SHA256 = re.compile(r"[0-9a-f]{64}")
SIGNATURE = re.compile(r"[0-9a-f]{128}")  # 64 bytes
REFUSED = ("malformed", "unsigned", "bad_signature", "fetch_failed", "bad_hash", "bad_bundle",
           "install_failed")  # why a sensor refuses an announcement: a fixed set (a metric's label)


class SigningKeyError(ValueError):
    """A key file that is not an Ed25519 key of the kind wanted; the message names the file."""


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["openssl", *args], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        raise SigningKeyError("the openssl command is not installed (Debian: apt-get install openssl)") from None


def check_key(path: str | Path, public: bool) -> Path:
    """``path``, once it is known to hold an Ed25519 key (public or private); else SigningKeyError naming it."""
    kind = "public" if public else "private"
    file = Path(path)
    if not file.is_file():
        raise SigningKeyError(f"{path}: no such file (the Ed25519 {kind} key)")
    done = _openssl("pkey", *(["-pubin"] if public else []), "-in", str(file), "-noout", "-text")
    text = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "ED25519" not in text.upper():
        raise SigningKeyError(f"{path}: not an Ed25519 {kind} key in PEM form (make one: openssl genpkey -algorithm "
                        "ed25519 -out rollout.key; openssl pkey -in rollout.key -pubout -out rollout.pub)")  # fmt: skip
    return file


def problem(announcement: Any) -> str:
    """'' for an announcement with every field of the right type and form; else what is wrong (one line)."""
    if not isinstance(announcement, dict):
        return "not a JSON object"
    for key, kind in FIELDS.items():
        if not isinstance(announcement.get(key), kind) or isinstance(announcement.get(key), bool):
            return f"'{key}' must be a {kind.__name__}"
    if not SHA256.fullmatch(announcement["sha256"]):
        return "'sha256' must be 64 lowercase hex digits"
    if announcement["size"] <= 0:
        return "'size' must be positive"
    sig = announcement.get("sig")
    if "sig" in announcement and not (isinstance(sig, str) and SIGNATURE.fullmatch(sig)):
        return "'sig' must be 128 lowercase hex digits (an Ed25519 signature)"
    return ""


def sign(announcement: Mapping[str, Any], private_key: Path) -> dict[str, Any]:
    """``announcement`` with its ``sig``; SigningKeyError when openssl cannot sign with ``private_key``."""
    body = {k: v for k, v in announcement.items() if k != "sig"}
    with tempfile.NamedTemporaryFile() as data:
        data.write(canonical(body))
        data.flush()
        done = _openssl("pkeyutl", "-sign", "-rawin", "-inkey", str(private_key), "-in", data.name)
    if done.returncode != 0 or len(done.stdout) != 64:
        why = done.stderr.decode(errors="replace").strip()
        raise SigningKeyError(f"{private_key}: openssl could not sign with it: {why}")
    return {**body, "sig": done.stdout.hex()}


def verify(announcement: Mapping[str, Any], public_key: Path) -> str:
    """'' when ``sig`` is the signature of the rest by ``public_key``; else 'unsigned' or 'bad_signature'."""
    if "sig" not in announcement:
        return "unsigned"
    with tempfile.TemporaryDirectory() as folder:
        data, sig = Path(folder) / "data", Path(folder) / "sig"
        data.write_bytes(canonical(announcement))
        sig.write_bytes(bytes.fromhex(str(announcement["sig"])))
        done = _openssl("pkeyutl", "-verify", "-pubin", "-rawin", "-inkey", str(public_key), "-in", str(data),
                        "-sigfile", str(sig))  # fmt: skip
    return "" if done.returncode == 0 else "bad_signature"
