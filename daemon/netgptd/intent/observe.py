"""Observed intents: each window, the edge LLM reads the window summary and its alerts and proposes intents.

The summary the LM reads is made of closed-set tokens only: application
classes from the vocabulary (anything else, e.g. an app name written by a
plugin or derived from a payload, is left out), alert categories from a fixed
list (anything else is ``other``), count and share buckets, and pointers to
addresses that parsed. Alert signatures, host names and other strings from
traffic are never read, so they cannot steer the output nor reach it.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable

from .data import count_bucket, share_bucket
from .lang import ALERT_CATEGORIES, GROUPS, MODEL_APPS, Context

MAX_ALERT_GROUPS = 4
TOP_APPS = 6


def _addr(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def summarize(window: Any, alerts: Iterable[dict[str, Any]]) -> tuple[list[str], dict[str, Any], Context]:
    """Prompt tokens, teacher features and pointer context of one window and its alerts."""
    ctx = Context()
    groups: Counter[tuple[str, str | None]] = Counter()
    dests: dict[tuple[str, str | None], Counter[str]] = {}
    for alert in alerts:
        if not isinstance(alert, dict):
            continue
        meta = alert.get("alert") if isinstance(alert.get("alert"), dict) else {}
        cat = meta.get("category")
        cat = cat if isinstance(cat, str) and cat in ALERT_CATEGORIES else "other"
        key = (cat, _addr(alert.get("src_ip")))
        groups[key] += 1
        dst = _addr(alert.get("dest_ip"))
        if dst:
            dests.setdefault(key, Counter())[dst] += 1
    prompt: list[str] = []
    feats: dict[str, Any] = {"alerts": [], "shares": {}}
    for (cat, src), n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))[:MAX_ALERT_GROUPS]:
        dst = dests[(cat, src)].most_common(1)[0][0] if (cat, src) in dests else None
        src_p = ctx.pointer("ip", src) if src else None
        dst_p = ctx.pointer("ip", dst) if dst else None
        prompt += ["alert", f"cat:{cat}", count_bucket(n)] + (["src", src_p] if src_p else []) + (["dst", dst_p] if dst_p else [])
        feats["alerts"].append({"category": cat, "count": n, "src": src_p, "dst": dst_p, "src_ip": src, "dst_ip": dst})
    known = set(MODEL_APPS)
    apps = {name: t for name, t in getattr(window, "apps", {}).items() if isinstance(name, str)}
    total = sum(max(0, int(t.bytes)) for t in apps.values()) or 1
    for g in ("conferencing", "p2p"):
        share = sum(int(t.bytes) for name, t in apps.items() if name in GROUPS[g]) / total
        feats["shares"][g] = share
        prompt += [f"grp:{g}", share_bucket(share)]
    top = sorted(((n, t) for n, t in apps.items() if n in known), key=lambda kv: (-int(kv[1].bytes), kv[0]))[:TOP_APPS]
    for name, t in top:
        prompt += [f"app:{name}", share_bucket(int(t.bytes) / total)]
    return prompt, feats, ctx


def evidence_for(raw_targets: list[str], feats: dict[str, Any], window: Any) -> str:
    """Evidence text from numbers, closed-set names and parsed addresses only."""
    start = getattr(window, "start", None)
    when = ""
    if isinstance(start, (int, float)):
        when = " in the window from " + datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for g in feats["alerts"]:
        if g["src"] in raw_targets or g["dst"] in raw_targets:
            return f"{g['count']} {g['category']} alert(s) from {g['src_ip'] or 'unknown'} to {g['dst_ip'] or 'unknown'}{when}"
    for t in raw_targets:
        if t.startswith("grp:") and t[4:] in feats["shares"]:
            return f"{t[4:]} carried {round(100 * feats['shares'][t[4:]])}% of bytes{when}"
    return "window summary" + when


class IntentDeduper:
    """Suppresses an intent equal to one admitted less than ``hold_s`` seconds ago (pure: time is passed in).

    Equal means same action, target and window; reason, confidence and source
    are ignored. An intent that persists is admitted again once per ``hold_s``.
    """

    def __init__(self, hold_s: float):
        if hold_s < 0:
            raise ValueError("hold_s must be >= 0")
        self.hold_s = float(hold_s)
        self._last: dict[str, float] = {}

    @staticmethod
    def key(intent: dict[str, Any]) -> str:
        return json.dumps([intent.get("action"), intent.get("target"), intent.get("window")], sort_keys=True)

    def admit(self, intent: dict[str, Any], now: float) -> bool:
        k = self.key(intent)
        last = self._last.get(k)
        if last is not None and now - last < self.hold_s:
            return False
        self._last[k] = now
        if len(self._last) > 4096:
            self._last = {key: t for key, t in self._last.items() if now - t < self.hold_s}
        return True

    def filter(self, intents: Iterable[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        return [i for i in intents if self.admit(i, now)]
