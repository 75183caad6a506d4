"""Intents that would cut the sensor's own site off need the operator's explicit confirmation.

An intent is *dangerous* when its action disrupts traffic (block, isolate,
rate_limit, deprioritize) and its target reaches what keeps the site, or the
sensor, online: every address (``0.0.0.0/0``, ``::/0``, an unspecified
address), a protected address (the default gateway, the sensor's own
addresses, what the operator lists in ``protected``) or a network holding
one, or the whole site (no host and no subnet: isolating it, or cutting all
of its traffic). :func:`dangers` says why, per intent; :func:`sentence_dangers`
does the same for the addresses written in an operator's sentence and for
words such as "all traffic" or "the whole site", since the model may read
"isolate 0.0.0.0/0" or "block all traffic" as one application site-wide.

:func:`discovered` reads the default gateways and the sensor's own addresses
from Linux's ``/proc/net`` (nothing elsewhere); the parsers are pure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

from netgptd.cloud.redact import IPV4, IPV6

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
DISRUPTIVE = frozenset({"block", "isolate", "rate_limit", "deprioritize"})
WRITTEN = re.compile(f"(?:{IPV6}|{IPV4})(?:/\\d{{1,3}})?")
# Words for the whole site: the model may read them as some application site-wide ("block all traffic" -> NetBIOS).
SITE_WIDE = re.compile(r"\b(?:all\s+(?:the\s+)?(?:traffic|hosts|addresses|devices|networks?)|everything|every\s+(?:host|device)"
                       r"|(?:whole|entire)\s+(?:site|network|lan|office)|the\s+internet)\b", re.IGNORECASE)
PROC = Path("/proc/net")


@dataclass(frozen=True)
class Protected:
    """What must stay reachable: (label, network) pairs, a single address being a /32 or /128."""

    entries: tuple[tuple[str, Network], ...] = ()

    @classmethod
    def of(cls, configured: Iterable[str], discovered: Iterable[tuple[str, str]] = ()) -> Protected:
        """The operator's ``protected`` entries (addresses or networks; a ValueError names a bad one) and the
        discovered (label, address) pairs."""
        entries = []
        for text in configured:
            try:
                entries.append(("the protected address", ipaddress.ip_network(str(text).strip(), strict=False)))
            except ValueError:
                raise ValueError(f"protected: {text!r} is not an address or network") from None
        entries += [(label, ipaddress.ip_network(address)) for label, address in discovered]
        return cls(tuple(entries))

    def hit(self, network: Network) -> str:
        """Why ``network`` (a host: /32, /128) must not be cut off ('' when it may be)."""
        shown = _shown(network)
        if network.prefixlen == 0 or (network.network_address.is_unspecified and network.num_addresses == 1):
            return f"{shown} is every address"
        for label, protected in self.entries:
            if network.version == protected.version and network.overlaps(protected):
                return f"{shown} reaches {label} {_shown(protected)}"
        return ""


def _shown(network: Network) -> str:
    """A network as written: a single address without its /32 or /128."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def dangers(intent: dict[str, Any], protected: Protected) -> list[str]:
    """Why this (schema-valid) intent would cut the site or the sensor off; empty when it would not."""
    action = intent.get("action")
    if action not in DISRUPTIVE:
        return []
    target = intent.get("target") or {}
    found = []
    for text in [*target.get("host", []), *target.get("subnet", [])]:
        why = protected.hit(ipaddress.ip_network(text, strict=False))
        if why:
            found.append(f"{action} {why}")
    if not target.get("host") and not target.get("subnet"):
        if action == "isolate":
            found.append(f"isolate applies to the whole site {target.get('site', '')}".rstrip())
        elif not target.get("application"):
            found.append(f"{action} applies to all traffic of the whole site {target.get('site', '')}".rstrip())
    return found


def sentence_dangers(sentence: str, protected: Protected) -> list[str]:
    """Why the addresses (or words for the whole site) in an operator's sentence need a confirmation; empty when
    none do."""
    found = [f"{m.group(0)!r} names the whole site" for m in SITE_WIDE.finditer(sentence)]
    for match in WRITTEN.finditer(sentence):
        try:
            network = ipaddress.ip_network(match.group(0), strict=False)
        except ValueError:  # a time of day, 999.1.1.1, ...
            continue
        why = protected.hit(network)
        if why and why not in found:
            found.append(why)
    return found


# -- what this machine is: Linux /proc/net -----------------------------------------------------------


def _hex_ipv4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(bytes.fromhex(text)[::-1])  # /proc/net/route: host byte order (little-endian)


def gateways_v4(route: str) -> list[str]:
    """Default gateways in ``/proc/net/route``."""
    out = []
    for line in route.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 8 and cols[1] == "00000000" and cols[7] == "00000000" and cols[2] != "00000000":
            out.append(str(_hex_ipv4(cols[2])))
    return out


def gateways_v6(route: str) -> list[str]:
    """Default gateways in ``/proc/net/ipv6_route``."""
    out = []
    for line in route.splitlines():
        cols = line.split()
        if len(cols) >= 10 and int(cols[0], 16) == 0 and cols[1] == "00" and int(cols[4], 16):
            out.append(str(ipaddress.IPv6Address(bytes.fromhex(cols[4]))))
    return out


def local_v4(fib_trie: str) -> list[str]:
    """The machine's own IPv4 addresses: ``/32 host LOCAL`` leaves of ``/proc/net/fib_trie``."""
    out, last = [], ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last and last not in out:
            out.append(last)
    return out


def local_v6(if_inet6: str) -> list[str]:
    """The machine's own IPv6 addresses in ``/proc/net/if_inet6``."""
    return [str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in if_inet6.splitlines() if line.strip()]


def discovered(proc: Path = PROC) -> list[tuple[str, str]]:
    """(label, address) of the default gateways and the sensor's own addresses; what cannot be read is left out."""

    def read(name: str) -> str:
        try:
            return (proc / name).read_text(encoding="ascii", errors="replace")
        except OSError:
            return ""

    found = [("the default gateway", a) for a in gateways_v4(read("route")) + gateways_v6(read("ipv6_route"))]
    found += [("the sensor's own address", a) for a in local_v4(read("fib_trie")) + local_v6(read("if_inet6"))]
    return found
