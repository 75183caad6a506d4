"""Signed ask requests: HMAC-SHA256 with a per-requester key, over a canonical form, in a time window, once.

A signed request carries ``requester`` (a name the sensor is configured with,
``[plugins.ask] requesters = {NAME = "KEY FILE"}``), ``ts`` (Unix seconds),
``nonce`` (16-128 random characters) and ``sig``: the hex HMAC-SHA256, with
the requester's key, of the canonical form of every other field, i.e. the
object without ``sig`` as ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8. Every field (id, question or intent, confirm)
is covered, so none can be changed in transit.

Against replay, ``ts`` must be within ``window_s`` of the sensor's clock
(either way) and a nonce is taken once: it is remembered until its ``ts``
leaves the window. Only admitted requests are remembered, so the token bucket
that admits them (:mod:`netgptd.cloud.admission`) bounds the memory.

A key file holds the secret as text (e.g. ``openssl rand -hex 32``), at least
32 characters once stripped of surrounding whitespace. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any, Mapping

KEY_MIN = 32  # characters in a key file
REFUSED = ("unsigned", "unknown_requester", "bad_signature", "stale", "replayed")  # what check() says, a fixed set


def canonical(request: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the request less ``sig``, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in request.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(request: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(request), hashlib.sha256).hexdigest()


def sign(request: Mapping[str, Any], requester: str, key: bytes, now: float, nonce: str = "") -> dict[str, Any]:
    """``request`` (id, question or intent, confirm) signed by ``requester`` at ``now``."""
    signed = {**request, "requester": requester, "ts": round(now, 3), "nonce": nonce or secrets.token_hex(16)}
    signed.pop("sig", None)
    return {**signed, "sig": signature(signed, key)}


def read_key(path: str | Path, name: str = "") -> bytes:
    """A requester's key from its file; a ValueError names the requester and the file (never the key)."""
    where = f"requesters.{name}: {path}" if name else str(path)
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read the key ({getattr(exc, 'strerror', None) or exc})") from None
    if len(text) < KEY_MIN:
        raise ValueError(f"{where}: the key is {len(text)} characters; at least {KEY_MIN} are needed "
                         "(make one with: openssl rand -hex 32)")  # fmt: skip
    return text.encode("utf-8")


class Verifier:
    """Checks signed requests against the configured keys; remembers the nonces of admitted ones."""

    def __init__(self, keys: Mapping[str, bytes], window_s: float) -> None:
        self.keys, self.window_s = dict(keys), window_s
        self._nonces: dict[str, dict[str, float]] = {name: {} for name in self.keys}  # nonce -> forget after

    def check(self, request: Mapping[str, Any], now: float) -> str:
        """'' for a request signed by a configured requester, in the window, not seen; else why not (REFUSED)."""
        if "sig" not in request:
            return "unsigned"
        key = self.keys.get(str(request.get("requester")))
        if key is None:
            return "unknown_requester"
        if not hmac.compare_digest(signature(request, key), str(request["sig"])):
            return "bad_signature"
        if abs(now - float(request["ts"])) > self.window_s:
            return "stale"
        if request["nonce"] in self._nonces[request["requester"]]:
            return "replayed"
        return ""

    def remember(self, request: Mapping[str, Any], now: float) -> None:
        """Take the (checked) request's nonce; forget those whose time left the window."""
        seen = self._nonces[request["requester"]]
        for nonce in [n for n, until in seen.items() if until < now]:
            del seen[nonce]
        seen[request["nonce"]] = float(request["ts"]) + self.window_s

    def remembered(self) -> int:
        return sum(len(seen) for seen in self._nonces.values())
