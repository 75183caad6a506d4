"""The site profile (who and where this sensor is) and the current state an intent is completed with.

A profile is operator configuration (a TOML file), validated on load: names
of subnets, hosts and periods are short lowercase words (they may appear in an
intent's ``reason``), addresses must parse, windows must validate against the
schema's ``window``. :class:`SiteState` holds what the daemon has learned from
traffic (e.g. host names seen in DHCP/DNS): those names are payload-derived,
so they are only ever *matched* against the operator's sentence and never
copied into an intent; only the validated address is.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgptd.files import describe

from .schema import DAYS, errors, load_schema

NAME = re.compile(r"^[a-z0-9][a-z0-9 _-]{0,31}$")
SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
WORKDAYS = list(DAYS[:5])
DEFAULT_HOURS = {"start": "08:00", "end": "18:00", "days": WORKDAYS}


class ProfileError(ValueError):
    """A site profile that cannot be used (the message says which entry)."""


def _window_errors(window: Any) -> list[str]:
    return errors(window, load_schema()["properties"]["window"])


def _name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name.lower().strip()):
        raise ProfileError(f"{kind} name {name!r}: use 1-32 lowercase letters, digits, space, _ or -")
    return name.lower().strip()


@dataclass(frozen=True)
class SiteProfile:
    site: str = "site"
    location: str = ""
    role: str = ""
    working_hours: dict[str, Any] | None = None  # None: not given (relative windows such as "after hours" cannot be resolved)
    subnets: dict[str, str] = field(default_factory=dict)  # name -> CIDR
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    periods: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> window

    def __post_init__(self) -> None:
        if not isinstance(self.site, str) or not SITE.match(self.site):
            raise ProfileError(f"site {self.site!r}: use 1-64 letters, digits, '.', '_' or '-'")
        problems = _window_errors(self.working_hours) if self.working_hours is not None else []
        if problems:
            raise ProfileError(f"working_hours: {'; '.join(problems)}")
        subnets = {}
        for name, cidr in self.subnets.items():
            try:
                subnets[_name("subnet", name)] = str(ipaddress.ip_network(str(cidr), strict=False))
            except ValueError:
                raise ProfileError(f"subnet {name!r}: {cidr!r} is not a network (CIDR)") from None
        hosts = {}
        for name, address in self.hosts.items():
            try:
                hosts[_name("host", name)] = str(ipaddress.ip_address(str(address)))
            except ValueError:
                raise ProfileError(f"host {name!r}: {address!r} is not an address") from None
        periods = {}
        for name, window in self.periods.items():
            window = {**window, "label": _name("period", name)}
            problems = _window_errors(window)
            if problems:
                raise ProfileError(f"period {name!r}: {'; '.join(problems)}")
            periods[_name("period", name)] = window
        object.__setattr__(self, "subnets", subnets)
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "periods", periods)

    @property
    def hours(self) -> dict[str, Any]:
        """The working hours: as given, else 08:00-18:00 on weekdays (what the observed intents assume)."""
        return self.working_hours if self.working_hours is not None else DEFAULT_HOURS

    @property
    def weekend_days(self) -> list[str]:
        work = set(self.hours.get("days", WORKDAYS))
        return [d for d in DAYS if d not in work] or ["sat", "sun"]

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "location": self.location, "role": self.role, "working_hours": self.working_hours,
                "subnets": self.subnets, "hosts": self.hosts,
                "periods": {k: {f: v for f, v in w.items() if f != "label"} for k, w in self.periods.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteProfile:
        known = {"site", "location", "role", "working_hours", "subnets", "hosts", "periods"}
        unknown = set(data) - known
        if unknown:
            raise ProfileError(f"unknown profile key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def load_profile(path: str | Path) -> SiteProfile:
    """A profile from a TOML file (keys as :class:`SiteProfile`; tables [subnets], [hosts], [periods.NAME], [working_hours])."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: {describe(exc)}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except RecursionError:  # tomllib recurses per level of nested arrays and inline tables
        raise ProfileError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        return SiteProfile.from_dict(data)
    except TypeError as exc:
        raise ProfileError(f"{path}: {exc}") from None


@dataclass
class SiteState:
    """What the daemon knows now: host names learned from traffic (name -> address; payload-derived, matched only)."""

    hosts: dict[str, str] = field(default_factory=dict)

    def valid_hosts(self) -> dict[str, str]:
        out = {}
        for name, address in self.hosts.items():
            try:
                out[str(name).lower().strip()] = str(ipaddress.ip_address(str(address)))
            except ValueError:
                continue
        return {k: v for k, v in out.items() if k and len(k) <= 64}
