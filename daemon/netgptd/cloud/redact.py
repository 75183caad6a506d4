"""Addresses out of a prompt before it leaves the sensor, and back into the answer for local display.

IPv4, IPv6 and MAC addresses are replaced by placeholders: ``HOST-n`` for an
IP address (either family), ``MAC-n`` for a MAC address. One redactor gives
the same address the same placeholder every time (so the cloud LLM can still
tell hosts apart and relate them), numbered in order of first appearance.
Candidates are checked with :mod:`ipaddress`, so ``12:30:45`` or ``999.1.1.1``
stay as they are; a dotted quad that is a valid address (a version number
such as ``1.2.3.4``) is redacted too: better one placeholder too many.

Ports, host names and URLs are not addresses and are left alone.
"""

from __future__ import annotations

import ipaddress
import re

# A MAC: six hex pairs with ':' or '-' (one separator throughout), or Cisco's three dotted quads of hex.
MAC = (r"(?<![\w:.-])(?:[0-9A-Fa-f]{2}(?P<sep>[:-])(?:[0-9A-Fa-f]{2}(?P=sep)){4}[0-9A-Fa-f]{2}"
       r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:-]|\.\w)")
# An IPv6 candidate: hex groups and colons (at least two), maybe an embedded IPv4 tail; ipaddress decides.
IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
ADDRESS = re.compile(f"(?P<mac>{MAC})|(?P<ip>{IPV6}|{IPV4})")
PLACEHOLDER = re.compile(r"\b(?:HOST|MAC)-\d+\b")


class Redactor:
    """Replaces addresses by placeholders, remembering which is which (one per conversation, or per sensor)."""

    def __init__(self) -> None:
        self.placeholders: dict[str, str] = {}  # canonical address -> placeholder
        self.originals: dict[str, str] = {}  # placeholder -> the address as first written
        self._counts = {"HOST": 0, "MAC": 0}

    def __len__(self) -> int:
        return len(self.originals)

    def _placeholder(self, kind: str, key: str, text: str) -> str:
        if key not in self.placeholders:
            self._counts[kind] += 1
            name = f"{kind}-{self._counts[kind]}"
            self.placeholders[key], self.originals[name] = name, text
        return self.placeholders[key]

    def _replace(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group("mac"):
            return self._placeholder("MAC", "mac:" + re.sub(r"[^0-9a-f]", "", text.lower()), text)
        try:
            address = ipaddress.ip_address(text)
        except ValueError:  # a time of day, 999.1.1.1, ...
            return text
        return self._placeholder("HOST", f"ip:{address.compressed}", text)

    def redact(self, text: str) -> str:
        """``text`` with every address replaced by its placeholder."""
        return ADDRESS.sub(self._replace, text)

    def restore(self, text: str) -> str:
        """``text`` (an answer) with the placeholders this redactor gave mapped back to the addresses.

        A placeholder it did not give (the LLM made one up) stays as it is.
        """
        return PLACEHOLDER.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)
