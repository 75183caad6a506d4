"""Synthetic training and evaluation data for the edge LLM.

The operator task is superseded at run time by the encoder-based
understanding (:mod:`nlu`); these generators stay because the shipped GPT was
trained on both tasks and this is how it is rebuilt. Operator sentences are built from phrasing TEMPLATES (sentence frames such as
"could you {clause}?" or "{when}, {clause}") filled with slots: action verb
phrases, application synonyms (the alias table :data:`lang.GROUPS` and the
class names), places (the profile's named subnets, literal networks), hosts
(addresses, the profile's named hosts) and periods. Every template has an id;
:func:`split_templates` holds some out, and the evaluation file is drawn from
held-out templates only (never seen in training).

Observed examples are window summaries with alerts, labelled by a teacher
policy (:func:`teacher`) that the LM learns to imitate under the same grammar.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from .lang import GROUPS, MODEL_APPS, Context, RawIntent, output_tokens, prepare_text
from .profile import SiteProfile

ACTION_PHRASES: dict[str, list[str]] = {
    "block": ["block {T}", "stop {T}", "ban {T}", "cut off {T}", "shut down {T}", "deny {T}", "drop {T}",
              "kill {T}", "don't allow {T}", "forbid {T}", "disallow {T}", "get rid of {T}"],
    "rate_limit": ["rate limit {T}", "throttle {T}", "slow down {T}", "limit {T}", "cap {T}", "put a cap on {T}",
                   "restrict the bandwidth of {T}", "limit the bandwidth of {T}", "rate-limit {T}", "police {T}"],
    "prioritize": ["prioritize {T}", "give {T} priority", "keep {T} smooth", "make sure {T} runs smoothly", "boost {T}",
                   "favour {T}", "favor {T}", "put {T} first", "guarantee bandwidth for {T}", "keep {T} fast",
                   "give priority to {T}", "make {T} a priority"],
    "deprioritize": ["deprioritize {T}", "lower the priority of {T}", "put {T} last", "make {T} wait",
                     "give {T} low priority", "push {T} to the back", "de-prioritize {T}", "demote {T}"],
    "isolate": ["isolate {T}", "quarantine {T}", "cut {T} off from the network", "disconnect {T}",
                "put {T} in quarantine", "fence off {T}", "segregate {T}", "wall off {T}"],
    "investigate": ["investigate {T}", "look into {T}", "check {T}", "have a look at {T}", "dig into {T}",
                    "examine {T}", "find out what {T} is doing", "inspect {T}", "analyse {T}", "analyze {T}"],
    "notify": ["notify me about {T}", "alert me about {T}", "tell me about {T}", "let me know about {T}",
               "warn me about {T}", "keep me posted on {T}", "send a notification about {T}", "notify me of {T}",
               "report {T} to me", "ping me about {T}"],
}

GROUP_PHRASES: dict[str, list[str]] = {
    "conferencing": ["video calls", "video conferencing", "zoom calls", "online meetings", "voice calls", "video chats",
                     "conference calls", "webrtc calls", "teams meetings", "calls"],
    "messaging": ["messaging", "chat apps", "instant messaging", "messengers", "chat"],
    "p2p": ["file sharing", "torrents", "peer to peer", "p2p", "torrenting", "p2p file sharing"],
    "cloud": ["cloud storage", "file sync", "cloud backups", "online storage"],
    "web": ["web browsing", "the web", "browsing", "web traffic", "websites"],
    "nameservice": ["name resolution", "name lookups", "dns lookups", "name services"],
    "discovery": ["service discovery", "device discovery", "local discovery", "broadcast discovery"],
}
APP_PHRASES: dict[str, list[str]] = {
    "BitTorrent": ["bittorrent", "bit torrent"], "DNS": ["dns"], "DNScrypt": ["dnscrypt", "encrypted dns"],
    "Discord": ["discord"], "Dropbox": ["dropbox"], "Gnutella": ["gnutella"], "HTTP": ["http", "plain http"],
    "Kerberos": ["kerberos"], "LLMNR": ["llmnr"], "MDNS": ["mdns", "multicast dns"], "Mining": ["crypto mining",
    "mining", "coin mining", "cryptomining"], "NetBIOS": ["netbios"], "QUIC": ["quic"], "SSDP": ["ssdp", "upnp"],
    "STUN": ["stun"], "TLS": ["tls", "https"], "WhatsApp": ["whatsapp"],
}  # fmt: skip
APP_SUFFIX = ["", "", "", " traffic"]

PLACE_NAMES = ["lab", "office", "dorms", "guest wifi", "server room", "library", "admin", "classrooms", "warehouse",
               "cafeteria", "reception", "studio", "labs", "front desk", "workshop", "staff", "students", "iot",
               "cameras", "printers", "finance", "hr", "sales", "clinic", "ward", "kitchen"]  # fmt: skip
HOST_NAMES = ["printer", "nas", "gateway", "camera", "kiosk", "build server", "backup box", "thermostat", "tv"]
PERIOD_NAMES = ["exams", "lunch", "night shift", "maintenance", "board meetings", "open day", "holidays",
                "the conference", "inventory", "finals", "audit", "launch week"]  # fmt: skip
SITE_NAMES = ["campus-north", "hq", "plant-2", "school", "clinic-a", "branch.office", "lab-east"]

WORK_PHRASES = ["during working hours", "during business hours", "in working hours", "during office hours",
                "while people are working", "in business hours", "during the workday"]  # fmt: skip
AFTER_PHRASES = ["after hours", "at night", "outside working hours", "outside business hours", "overnight",
                 "in the evening", "after work"]  # fmt: skip
WEEKEND_PHRASES = ["on weekends", "at the weekend", "over the weekend", "on saturdays and sundays", "during weekends"]

# A clause is an action phrase around its target, then place and time.
# Templates: sentence frames. {C} is a clause (VP + where + when).
FRAMES: list[str] = [
    "{C}", "please {C}", "can you {C}?", "i want you to {C}", "we need to {C}", "{C} please", "could you please {C}, thanks",
    "from now on {C}", "hey netgpt, {C}", "the policy is: {C}", "urgent: {C}!", "would you {C}", "i'd like you to {C}",
    "{C}. thanks", "team request - {C}", "as discussed, {C}", "let's {C}", "go ahead and {C}", "my boss wants us to {C}",
    "quick one: {C}", "remember to {C}", "new rule: {C}", "is it possible to {C}?", "kindly {C}", "{C} asap",
    "we have to {C}", "you should {C}", "it would be great if you could {C}", "ok so {C}", "starting today, {C}",
    "{C}, that's all", "can we {C}?", "need you to {C}", "per the manager, {C}", "{C} if you can",
    "i think we should {C}", "action item: {C}", "netgpt please {C}", "heads up, {C}", "do me a favour and {C}",
]  # fmt: skip
JOINS = ["{A} and {B}", "{A}, also {B}", "{A}; {B}", "first {A}, then {B}", "{A} and then {B}", "{A}, and {B}",
         "{A}. also {B}", "{A} as well as {B}"]  # fmt: skip
# Clause orders: how the verb phrase, place and time are arranged.
CLAUSES = ["{VP}{W}{P}", "{VP}{P}{W}", "{PF}, {VP}{W}", "{WF}, {VP}{P}"]


def held_out(n: int, every: int = 4) -> set[int]:
    """Template ids held out of training (every ``every``-th, starting at 2)."""
    return {i for i in range(n) if i % every == 2}


def split_templates() -> dict[str, dict[str, list[int]]]:
    frames_out, joins_out = held_out(len(FRAMES)), held_out(len(JOINS), 3)
    return {
        "train": {"frames": [i for i in range(len(FRAMES)) if i not in frames_out],
                  "joins": [i for i in range(len(JOINS)) if i not in joins_out]},
        "eval": {"frames": sorted(frames_out), "joins": sorted(joins_out)},
    }  # fmt: skip


def _ip(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.7:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.85:
        return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return str(ipaddress.IPv6Address(f"2001:db8::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}"))


def _cidr(rng: random.Random) -> str:
    if rng.random() < 0.85:
        bits = rng.choice([16, 20, 22, 24, 24, 24, 26, 28])
        return str(ipaddress.ip_network(f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/{bits}", strict=False))
    return str(ipaddress.ip_network(f"2001:db8:{rng.randint(1, 0xFFFF):x}::/64"))


def random_profile(rng: random.Random) -> SiteProfile:
    places = rng.sample(PLACE_NAMES, rng.randint(2, 5))
    hosts = rng.sample(HOST_NAMES, rng.randint(0, 3))
    periods = rng.sample(PERIOD_NAMES, rng.randint(1, 3))
    start = rng.choice(["07:00", "08:00", "08:30", "09:00"])
    end = rng.choice(["16:00", "17:00", "17:30", "18:00", "19:00"])

    def period() -> dict[str, Any]:
        w: dict[str, Any] = {"start": rng.choice(["08:00", "09:00", "12:00", "22:00"]),
                             "end": rng.choice(["13:00", "17:00", "18:00", "06:00"])}  # fmt: skip
        if rng.random() < 0.5:
            w["days"] = rng.sample(["mon", "tue", "wed", "thu", "fri"], rng.randint(1, 5))
        if rng.random() < 0.5:
            w["from"], w["until"] = "2025-06-02", "2025-06-20"
        return w

    return SiteProfile(site=rng.choice(SITE_NAMES), working_hours={"start": start, "end": end,
                       "days": ["mon", "tue", "wed", "thu", "fri"]},
                       subnets={p: _cidr(rng) for p in places}, hosts={h: _ip(rng) for h in hosts},
                       periods={p: period() for p in periods})  # fmt: skip


def _apps_phrase(rng: random.Random) -> tuple[str, list[str]]:
    """An application phrase and its target tokens."""
    def one() -> tuple[str, str]:
        if rng.random() < 0.55:
            g = rng.choice(list(GROUP_PHRASES))
            return rng.choice(GROUP_PHRASES[g]), f"grp:{g}"
        a = rng.choice(list(APP_PHRASES))
        return rng.choice(APP_PHRASES[a]), f"app:{a}"

    first = one()
    if rng.random() < 0.15:
        second = one()
        if second[1] != first[1]:
            return f"{first[0]} and {second[0]}{rng.choice(APP_SUFFIX)}", [first[1], second[1]]
    return first[0] + rng.choice(APP_SUFFIX), [first[1]]


def _host_phrase(rng: random.Random, profile: SiteProfile) -> tuple[str, str]:
    """A host phrase and the address it names."""
    if profile.hosts and rng.random() < 0.3:
        name = rng.choice(list(profile.hosts))
        return rng.choice(["the ", "our ", ""]) + name, profile.hosts[name]
    ip = _ip(rng)
    return rng.choice(["", "", "host ", "the machine at ", "device ", "the host "]) + ip, ip


def _place_phrase(rng: random.Random, profile: SiteProfile) -> tuple[str, list[str]]:
    """A place noun phrase and the CIDRs it names."""
    def one() -> tuple[str, str]:
        if rng.random() < 0.8 and profile.subnets:
            name = rng.choice(list(profile.subnets))
            return rng.choice(["the ", "the ", "our ", ""]) + name, profile.subnets[name]
        cidr = _cidr(rng)
        return rng.choice(["", "subnet ", "the network "]) + cidr, cidr

    a = one()
    if rng.random() < 0.12:
        b = one()
        if b[1] != a[1]:
            return f"{a[0]} and {b[0]}", [a[1], b[1]]
    return a[0], [a[1]]


def _period_phrase(rng: random.Random, profile: SiteProfile) -> tuple[str, str]:
    """A time phrase and its window label."""
    r = rng.random()
    if r < 0.45 and profile.periods:
        name = rng.choice(list(profile.periods))
        return rng.choice(["during {p}", "while {p} is on", "for {p}", "throughout {p}", "during the {p}",
                           "in {p}", "until {p} is over"]).format(p=name), name  # fmt: skip
    if r < 0.7:
        return rng.choice(WORK_PHRASES), "working hours"
    if r < 0.88:
        return rng.choice(AFTER_PHRASES), "after hours"
    return rng.choice(WEEKEND_PHRASES), "weekend"


def gold_intent(action: str, apps: list[str], hosts: list[str], nets: list[str], window: str | None,
                profile: SiteProfile) -> dict[str, Any]:  # fmt: skip
    expanded = sorted({a for t in apps for a in (GROUPS[t[4:]] if t.startswith("grp:") else [t[4:]])})
    return {"action": action, "application": expanded, "host": sorted(set(hosts)), "subnet": sorted(set(nets)),
            "window": window}  # fmt: skip


def _clause(rng: random.Random, profile: SiteProfile) -> tuple[str, dict[str, Any], list[str]]:
    """A clause, its gold fields, and its app target tokens."""
    action = rng.choice(list(ACTION_PHRASES))
    kind = rng.choices(["app", "host", "place", "apphost"], [0.55, 0.18, 0.12, 0.15])[0]
    if action in ("isolate", "investigate") and kind == "app" and rng.random() < 0.6:
        kind = rng.choice(["host", "place"])
    apps: list[str] = []
    hosts: list[str] = []
    nets: list[str] = []
    if kind in ("app", "apphost"):
        tphrase, apps = _apps_phrase(rng)
    if kind == "host":
        tphrase, ip = _host_phrase(rng, profile)
        hosts = [ip]
    if kind == "apphost":
        hphrase, ip = _host_phrase(rng, profile)
        tphrase = f"{tphrase} {rng.choice(['from', 'on', 'of'])} {hphrase}"
        hosts = [ip]
    if kind == "place":
        tphrase, nets = _place_phrase(rng, profile)
    vp = rng.choice(ACTION_PHRASES[action]).format(T=tphrase)
    where = ""
    if kind != "place" and rng.random() < 0.5:
        pphrase, nets = _place_phrase(rng, profile)
        where = f"{rng.choice(['for', 'in', 'on', 'across', 'inside', 'within'])} {pphrase}"
    when = ""
    window = None
    if rng.random() < 0.45:
        when, window = _period_phrase(rng, profile)
    layout = rng.choice(CLAUSES)
    if "{PF}" in layout and not when or "{WF}" in layout and not where:
        layout = CLAUSES[0]
    text = layout.format(VP=vp, W=f" {where}" if where else "", P=f" {when}" if when else "", PF=when, WF=where)
    return text, gold_intent(action, apps, hosts, nets, window, profile), apps


def operator_example(rng: random.Random, frames: list[int], joins: list[int], profile: SiteProfile | None = None) -> dict[str, Any]:
    """One (sentence, profile) -> gold intents example from the given templates."""
    profile = profile or random_profile(rng)
    n = 2 if rng.random() < 0.2 else 1
    clauses = [_clause(rng, profile) for _ in range(n)]
    body = clauses[0][0] if n == 1 else JOINS[(j := rng.choice(joins))].format(A=clauses[0][0], B=clauses[1][0])
    f = rng.choice(frames)
    text = FRAMES[f].format(C=body)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return {"text": text, "profile": profile.to_dict(), "intents": [c[1] for c in clauses],
            "app_tokens": [c[2] for c in clauses], "template": f"frame{f}" + (f"+join{j}" if n == 2 else "")}  # fmt: skip


def operator_tokens(example: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """Prompt and canonical output tokens of an operator example (None if its pointers overflow)."""
    profile = SiteProfile.from_dict(example["profile"])
    prompt, ctx = prepare_text(example["text"], profile)
    return prompt, gold_output(example["intents"], ctx, example.get("app_tokens"))


def gold_output(intents: list[dict[str, Any]], ctx: Context, app_tokens: list[list[str]] | None = None) -> list[str]:
    """Output tokens for gold intents given the input's pointers (apps: group tokens where given or exact)."""
    raws = []
    for k, it in enumerate(intents):
        targets = list(app_tokens[k]) if app_tokens else _app_tokens(it["application"])
        for ip in it["host"]:
            targets.append(f"<ip{ctx.ips.index(ip)}>")
        cidrs = [c for c, _ in ctx.nets]
        for net in it["subnet"]:
            targets.append(f"<net{cidrs.index(net)}>")
        w = it.get("window")
        token = None
        if w:
            token = {"working hours": "win:work", "after hours": "win:after", "weekend": "win:weekend"}.get(w)
            token = token or f"<per{ctx.periods.index(w)}>"
        raws.append(RawIntent(it["action"], targets, token))
    return output_tokens(raws)


def _app_tokens(apps: list[str]) -> list[str]:
    """Tokens for a set of classes: a group when it is exactly one, else the classes."""
    for g, members in GROUPS.items():
        if sorted(apps) == sorted(members):
            return [f"grp:{g}"]
    return [f"app:{a}" for a in apps]


# ---------------------------------------------------------------- observed

CONFERENCING, P2P = set(GROUPS["conferencing"]), set(GROUPS["p2p"])


def share_bucket(share: float) -> str:
    return "q1" if share < 0.05 else "q2" if share < 0.15 else "q3" if share < 0.3 else "q4" if share < 0.5 else "q5"


def count_bucket(n: int) -> str:
    return "n1" if n <= 1 else "n2" if n <= 4 else "n3" if n <= 19 else "n4"


def teacher(features: dict[str, Any]) -> list[RawIntent]:
    """The policy observed intents are trained on (see :func:`observe.summarize` for the features)."""
    out: list[RawIntent] = []
    for g in features["alerts"]:
        cat, n, src, dst = g["category"], g["count"], g["src"], g["dst"]
        bucket = count_bucket(n)
        if cat == "mining" and dst is not None:
            out.append(RawIntent("block", [dst]))
        elif src is None:
            continue
        elif cat == "scan":
            out.append(RawIntent({"n1": "notify", "n2": "investigate", "n3": "investigate", "n4": "isolate"}[bucket], [src]))
        elif cat == "dos":
            out.append(RawIntent("notify" if bucket == "n1" else "rate_limit", [src]))
        elif cat == "bruteforce":
            out.append(RawIntent("investigate" if bucket == "n1" else "block", [src]))
        elif cat in ("webattack", "tunnel"):
            out.append(RawIntent("investigate" if bucket in ("n1", "n2") else "isolate", [src]))
        elif bucket in ("n3", "n4"):
            out.append(RawIntent("investigate", [src]))
    if features["shares"].get("conferencing", 0) >= 0.3:
        out.append(RawIntent("prioritize", ["grp:conferencing"]))
    if features["shares"].get("p2p", 0) >= 0.3:
        out.append(RawIntent("deprioritize", ["grp:p2p"]))
    return out[:6]


def random_window_and_alerts(rng: random.Random) -> tuple[Any, list[dict[str, Any]]]:
    from ..trend.windows import Traffic, Window

    w = Window(site="s", sensor="x", start=1_746_100_800.0 + 60 * rng.randint(0, 10_000), width=60.0)
    apps = rng.sample(MODEL_APPS + ["unknown"], rng.randint(1, 7))
    weights = [rng.random() ** 2 for _ in apps]
    if rng.random() < 0.3:
        weights[rng.randrange(len(apps))] += rng.uniform(0.5, 4)
    total_bytes = rng.randint(10_000, 50_000_000)
    for a, wt in zip(apps, weights):
        b = int(total_bytes * wt / sum(weights))
        w.apps[a] = Traffic(max(1, b // 20_000), b, b // 800)
        w.total.add(w.apps[a])
    alerts = []
    for _ in range(rng.choices([0, 1, 2, 3], [0.35, 0.35, 0.2, 0.1])[0]):
        cat = rng.choice(["scan", "scan", "dos", "bruteforce", "mining", "mining", "webattack", "tunnel", "weird"])
        src, dst = _ip(rng), _ip(rng)
        n = rng.choice([1, 2, 3, 5, 8, 15, 25, 60])
        for _ in range(n):
            alerts.append({"event_type": "alert", "src_ip": src, "dest_ip": dst if cat != "scan" else _ip(rng),
                           "alert": {"category": cat, "signature": "x"}, "netgpt": {"detector": "rule"}})  # fmt: skip
            w.alerts[cat] = w.alerts.get(cat, 0) + 1
    rng.shuffle(alerts)
    return w, alerts


__all__ = ["operator_example", "operator_tokens", "split_templates", "teacher"]
