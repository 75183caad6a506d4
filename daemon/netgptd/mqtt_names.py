"""What an MQTT broker accepts of the names netgptd puts in its topics (pure, no I/O).

One place for the rules, used by the configuration check (``[sensor]`` site
and sensor names, ``netgptd check-config``) and by the plugins that talk
MQTT when they are made: a value a broker would refuse, or a wildcard that
would make a publish fail, is refused at start with the setting's name,
instead of silently disabling MQTT later.
"""

from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
NAME_RULE = "1-64 characters of A-Z a-z 0-9 . _ -"
MAX_KEEPALIVE = 65535  # MQTT's keep alive is a 16-bit count of seconds
MAX_PREFIX_BYTES = 1024  # far below MQTT's 65535-byte topics, and no real prefix comes near it
PLACEHOLDER = "x" * 64  # the longest site or sensor name, for checking a template


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a site or sensor name (it goes into topics), or None."""
    if NAME.fullmatch(value):
        return None
    shown = value if len(value) <= 80 else f"{value[:40]}...({len(value)} characters)"
    return f"must be {NAME_RULE}, not {shown!r}"


def topic_problem(topic: str) -> str | None:
    """Why a broker would refuse publishing to ``topic``, or None."""
    if any(c in topic for c in "+#\0"):
        return f"{topic!r} holds an MQTT wildcard (+ or #) or NUL"
    size = len(topic.encode("utf-8", "surrogatepass"))
    if size > MAX_PREFIX_BYTES:
        return f"{size:,} bytes long, more than {MAX_PREFIX_BYTES:,}"
    return None


def check_mqtt(topic_prefix: str, keepalive: int, site: str = PLACEHOLDER, sensor: str = PLACEHOLDER) -> None:
    """A ValueError naming the setting when a broker would refuse these (``topic_prefix`` is a template
    with ``{site}`` and ``{sensor}``; without the real names, the longest valid ones stand in)."""
    try:
        topic = topic_prefix.format(site=site, sensor=sensor)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"topic_prefix: only {{site}} and {{sensor}} are filled ({exc!r} in {topic_prefix!r})") from None
    problem = topic_problem(topic)
    if problem:
        raise ValueError(f"topic_prefix: {problem}")
    if not 0 <= keepalive <= MAX_KEEPALIVE:
        raise ValueError(f"keepalive: must be between 0 and {MAX_KEEPALIVE} seconds (MQTT's limit), got {keepalive}")
