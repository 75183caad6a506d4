"""From decoded tokens to schema intents: pointers resolved, groups expanded, ``reason`` from a template.

Nothing here copies text from traffic. A reason is built only from closed
sets (actions, application classes, group and alert category names),
addresses that parsed, numbers, and names from the operator's own profile;
then it is reduced to the schema's character set and length as a last guard.
"""

from __future__ import annotations

import re
from typing import Any

from .lang import GROUPS, Context, RawIntent
from .profile import SiteProfile
from .schema import validate

REASON_CHARS = re.compile(r"[^A-Za-z0-9 .,:;/()_+=%-]")


def clean_reason(text: str) -> str:
    text = REASON_CHARS.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip()
    return (text[:237] + "...") if len(text) > 240 else (text or "no reason")


def window_of(token: str, ctx: Context, profile: SiteProfile) -> dict[str, Any]:
    wh = profile.hours
    if token.startswith("<per"):
        return dict(profile.periods[ctx.periods[int(token[4:-1])]])
    if token == "win:work":
        return {**wh, "label": "working hours"}
    if token == "win:after":
        return {"start": wh["end"], "end": wh["start"], "label": "after hours"}
    if token == "win:weekend":
        return {"start": "00:00", "end": "00:00", "days": profile.weekend_days, "label": "weekend"}
    raise ValueError(token)


def target_of(raw: RawIntent, ctx: Context, profile: SiteProfile) -> tuple[dict[str, Any], str]:
    """The target object, and words describing it for the reason."""
    apps: set[str] = set()
    words: list[str] = []
    scope: list[str] = []
    hosts: list[str] = []
    nets: list[str] = []
    for tok in raw.targets:
        if tok.startswith("grp:"):
            apps.update(GROUPS[tok[4:]])
            words.append(f"{tok[4:]} ({', '.join(GROUPS[tok[4:]])})")
        elif tok.startswith("app:"):
            apps.add(tok[4:])
            words.append(tok[4:])
        elif tok.startswith("<ip"):
            hosts.append(ctx.ips[int(tok[3:-1])])
            scope.append(f"host {hosts[-1]}")
        elif tok.startswith("<net"):
            cidr, name = ctx.nets[int(tok[4:-1])]
            nets.append(cidr)
            scope.append(f"{name} ({cidr})" if name else f"subnet {cidr}")
    target: dict[str, Any] = {}
    if apps:
        target["application"] = sorted(apps)
    if hosts:
        target["host"] = list(dict.fromkeys(hosts))
    if nets:
        target["subnet"] = list(dict.fromkeys(nets))
    target["site"] = profile.site
    text = ", ".join(words)
    if scope:
        text = f"{text} on {', '.join(scope)}" if text else ", ".join(scope)
    return target, text


def realize(raw: RawIntent, ctx: Context, profile: SiteProfile, source: str, confidence: float,
            evidence: str = "") -> dict[str, Any]:  # fmt: skip
    """A schema-valid intent (validated here: a failure is a bug, not an input problem)."""
    target, words = target_of(raw, ctx, profile)
    intent: dict[str, Any] = {"action": raw.action, "target": target}
    what = f"{raw.action.replace('_', ' ')} {words}"
    if raw.window:
        intent["window"] = window_of(raw.window, ctx, profile)
        what += f" during {intent['window'].get('label', 'the window')}"
    lead = "operator asked to" if source == "operator" else "observed"
    intent["reason"] = clean_reason(f"{lead} {what}" + (f"; evidence: {evidence}" if evidence else ""))
    intent["confidence"] = round(min(1.0, max(0.0, float(confidence))), 3)
    intent["source"] = source
    validate(intent)
    return intent
