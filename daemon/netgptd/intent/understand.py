"""Operator text to intents: clauses, what each asks (the encoder's action head), targets, windows, abstention.

The pipeline, each step closed and checkable:

1. :func:`spans.pieces_of` / :func:`spans.find_spans`: addresses, profile
   names, applications, windows, and references that resolve to nothing.
2. :func:`clauses`: sentences, then clauses at conjunctions and commas,
   except inside a list of entities ("tiktok, instagram and snapchat").
3. The action head reads each clause with its entities masked (so the
   action never depends on which application was named) and says one of the
   seven actions, ``context`` (a statement that names targets: "someone at
   10.1.1.5 is scanning us"), ``negated`` (don't / stop / unblock: nothing to
   do), ``question`` or ``other`` (off-topic, or an action netgptd has not).
4. Targets: a clause's own entities; an action without targets takes those
   of the nearest context clause ("...; cut it off"), and a context clause
   with targets and no action gives them to one. ``except`` removes
   products from a category.
5. Abstention: an action below the calibrated threshold, a target or window
   that does not resolve, or two different actions on one target yield no
   intent for that clause, and a ``not_understood`` line says why.

Nothing is invented: targets are spans of the text resolved through the
lexicon and the profile; windows come from the words and the profile's hours
and periods; ``reason`` is built from closed sets and the profile's names.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from .apps import lexicon, unobservable
from .compose import clean_reason
from .profile import SiteProfile, SiteState
from .schema import actions, validate
from .spans import Piece, Span, find_spans, pieces_of

LABELS = [*actions(), "context", "negated", "question", "other"]
CONJUNCTIONS = {"and", "but", "then", "also", "plus", "so", "while", "afterwards", "meanwhile", "additionally"}
LIST_GLUE = {",", "and", "or", "&", "the", "also", "plus", "as", "well", "other", "any", "all", "similar", "such"}
EXCEPT = [["except"], ["except", "for"], ["but", "not"], ["other", "than"], ["apart", "from"], ["excluding"],
          ["besides"], ["save", "for"], ["not", "including"], ["minus"], ["with", "the", "exception", "of"],
          ["aside", "from"], ["leave", "out"], ["leaving", "out"], ["but", "leave"], ["excluding"], ["without"],
          ["vs"], ["versus"]]  # fmt: skip
EXAMPLE = [["such", "as"], ["like"], ["including"], ["e.g"], ["e.g."], ["eg"], ["for", "example"], ["for", "instance"]]
MASK = {"app": "appname", "host": "hostaddr", "net": "netaddr", "site": "everyone", "window": ""}
MASK_UNRESOLVED = {"place": "netaddr", "host": "hostaddr", "time": ""}  # read as resolved ones are: what is asked
MAX_CLAUSES = 12
MAX_ADDRESSES = 16  # the schema's limit per intent
ENFORCING = {"block", "rate_limit", "prioritize", "deprioritize", "isolate"}  # two of these on one target contradict
PREPOSITIONS = {"to", "from", "in", "out", "into", "inbound", "outbound", "on", "off", "up", "down"}
ADDRESS_WORDS = {"address", "ip", "host", "src", "source", "attacker", "sender"}
SUBJECTS = {"it", "they", "he", "she", "we", "i", "you", "that", "this", "someone", "somebody", "nobody", "everyone"}
ALL_OF_THEM = {"both", "all", "them", "those", "these", "each", "every"}
PRONOUNS = {"it", "there", "them", "those", "its", "that", "this", "him", "her", "thing"}


@dataclass
class Clause:
    pieces: list[Piece]
    spans: list[Span]
    sentence: int
    label: str = "other"
    prob: float = 0.0
    targets: dict[str, list[Any]] = field(default_factory=lambda: {"app": [], "host": [], "net": [], "except": []})
    site_wide: bool = False
    window: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.pieces)

    def masked(self) -> str:
        """The clause as the action head reads it: entities replaced by a placeholder word per kind."""
        out: list[str] = []
        i = 0
        starts = {s.start: s for s in self.spans}
        while i < len(self.pieces):
            span = starts.get(i)
            if span:
                word = MASK_UNRESOLVED[span.value] if span.kind == "unresolved" else MASK[span.kind]
                if word:
                    out.append(word)
                i = span.end
            else:
                out.append(self.pieces[i].text)
                i += 1
        return " ".join(out)

    def has_targets(self) -> bool:
        return bool(self.targets["app"] or self.targets["host"] or self.targets["net"] or self.site_wide)


@dataclass
class Understanding:
    intents: list[dict[str, Any]]
    not_understood: list[str]
    clauses: list[Clause]


def _split_points(pieces: list[Piece], spans: list[Span]) -> list[int]:
    """Indices where a new clause starts."""
    entity_at = {k: s for s in spans if s.kind in ("app", "host", "net", "site", "window") for k in range(s.start, s.end)}
    words = [p.text for p in pieces]
    cuts = []
    inside = {k for s in spans for k in range(s.start + 1, s.end)}
    for i, w in enumerate(words):
        if i == 0 or i in entity_at or i in inside:
            continue
        if pieces[i - 1].kind == "punct" and words[i - 1] in (".", "!", "?", ";"):
            cuts.append(i)
            continue
        if w not in CONJUNCTIONS and w != ",":
            continue
        if any(words[i + (w == ",") : i + (w == ",") + len(e)] == e for e in EXCEPT):
            continue  # "but not", ", except linkedin": an exception, not a new clause
        if w in ("and", "or") and words[i - 1] in PREPOSITIONS and words[i + 1 : i + 2] and words[i + 1] in PREPOSITIONS:
            continue  # "to and from", "in and out"
        left = i - 1
        while left >= 0 and words[left] in LIST_GLUE and left not in entity_at:
            left -= 1
        right = i + 1
        while right < len(words) and words[right] in LIST_GLUE and right not in entity_at:
            right += 1
        if left in entity_at and right in entity_at:
            continue  # a list of entities
        cuts.append(i + (w == ","))
    return sorted(set(cuts))


def clauses(text: str, profile: SiteProfile | None, state: SiteState | None) -> list[Clause]:
    pieces = pieces_of(text)
    spans = sorted(find_spans(pieces, profile, state), key=lambda s: s.start)
    cuts = [0, *_split_points(pieces, spans), len(pieces)]
    out: list[Clause] = []
    sentence = 0
    for a, b in zip(cuts, cuts[1:]):
        if a > 0 and pieces[a - 1].text in (".", "!", "?", ";"):
            sentence += 1
        body = pieces[a:b]
        while body and (body[-1].kind == "punct" or body[-1].text in CONJUNCTIONS):
            body.pop()
        lead = 0
        while lead < len(body) and (body[lead].kind == "punct" or body[lead].text in CONJUNCTIONS):
            lead += 1
        body = body[lead:]
        if not body:
            continue
        start = a + lead
        own = [Span(s.start - start, s.end - start, s.kind, s.value, s.words) for s in spans if start <= s.start and s.end <= start + len(body)]
        out.append(Clause(body, own, sentence))
    return out[:MAX_CLAUSES]


def _except_starts(clause: Clause) -> int | None:
    words = [p.text for p in clause.pieces]
    for i in range(len(words)):
        if any(words[i : i + len(e)] == e for e in EXCEPT):
            return i
    return None


def _collect(clause: Clause) -> None:
    cut = _except_starts(clause)
    words = [p.text for p in clause.pieces]
    examples: set[str] = set()  # products named as examples of a category: "messaging apps such as whatsapp"
    example_at = next((i + len(e) for i in range(len(words)) for e in EXAMPLE if words[i : i + len(e)] == e), None)
    clock = any(s.kind == "window" and "clock" in s.value for s in clause.spans)
    for span in clause.spans:
        after_cut = cut is not None and span.start > cut
        if span.kind == "app":
            clause.targets["except" if after_cut else "app"].append(span.value)
            if example_at is not None and span.start >= example_at:
                examples.add(span.value)
        elif span.kind in ("host", "net") and not after_cut:
            clause.targets[span.kind].append(span.value)
        elif span.kind == "site":
            clause.site_wide = True
        elif span.kind == "window":
            clause.window = _merge_windows(clause.window or {}, span.value)
    if clock:  # "during evening hours, from 18:00 to 23:00": the clock says when
        clause.spans = [s for s in clause.spans if not (s.kind == "unresolved" and s.value == "time")]
    lex = lexicon()
    named = {r for r in clause.targets["app"] if not r.startswith("category:") and r not in examples}
    cats = [r for r in clause.targets["app"] if r.startswith("category:")]
    clause.targets["app"] = [r for r in clause.targets["app"]
                             if not (r.startswith("category:") and named & set(lex.categories[r[9:]]))  # "gaming on steam"
                             and not (r in examples and any(r in lex.categories[c[9:]] for c in cats))]  # fmt: skip
    # "quarantine 10.40.3.17 in the labs", "10.30.8.0/24 in the dorms": the wider one only says where
    hosts = [ipaddress.ip_address(a) for a, _ in clause.targets["host"]]
    nets = [ipaddress.ip_network(c) for c, _ in clause.targets["net"]]
    clause.targets["net"] = [(c, n) for c, n in clause.targets["net"]
                             if not any(h in ipaddress.ip_network(c) for h in hosts)
                             and not any(o != ipaddress.ip_network(c) and o.version == ipaddress.ip_network(c).version
                                         and o.subnet_of(ipaddress.ip_network(c)) for o in nets)]  # fmt: skip


def _merge_windows(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Window words of one clause together; days said apart ("mon, tue and wed") add up, in week order."""
    out = {**a, **b}
    if "days" in a and "days" in b:
        week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        out["days"] = [d for d in week if d in set(a["days"]) | set(b["days"])]
    return out


def _window(spec: dict[str, Any], profile: SiteProfile | None, today: _dt.date) -> tuple[dict[str, Any] | None, str]:
    """A schema window for the collected window words, or (None, why not)."""
    days = spec.get("days")
    if "period" in spec and profile is not None:
        return dict(profile.periods[spec["period"]]), ""
    if "clock" in spec:
        w = {**spec["clock"], "label": "clock"}
        return ({**w, "days": days} if days else w), ""
    rel = spec.get("relative")
    if rel:
        if profile is None or profile.working_hours is None:
            return None, f"'{rel}' needs the site's working hours (a site profile with [working_hours])"
        wh = profile.working_hours
        if rel == "working hours":
            return {**wh, "label": "working hours"}, ""
        if rel == "after hours":
            return {"start": wh["end"], "end": wh["start"], "label": "after hours"}, ""
        if rel == "weekend":
            return {"start": "00:00", "end": "00:00", "days": profile.weekend_days, "label": "weekend"}, ""
        return {"start": wh["end"], "end": wh["start"], "from": today.isoformat(),
                "until": (today + _dt.timedelta(days=1)).isoformat(), "label": "tonight"}, ""  # fmt: skip
    if days:
        return {"start": "00:00", "end": "00:00", "days": days, "label": "days"}, ""
    return None, ""


def _unique(named: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """One (address, name) per address, the first said."""
    out: dict[str, tuple[str, str | None]] = {}
    for address, name in named:
        out.setdefault(address, (address, name))
    return list(out.values())


def _reason(action: str, apps: list[str], hosts: list[tuple[str, str | None]], nets: list[tuple[str, str | None]],
            window: dict[str, Any] | None) -> str:  # fmt: skip
    what = ", ".join(apps)
    scope = [f"host {a}" + (f" ({n})" if n else "") for a, n in hosts] + [f"{n} ({c})" if n else f"subnet {c}" for c, n in nets]
    where = ", ".join(scope)
    target = f"{what} on {where}" if what and where else (what or where or "the site")
    text = f"operator asked to {action.replace('_', ' ')} {target}"
    if window:
        text += f" during {window.get('label', 'the window')}"
    return clean_reason(text)


def understand(text: str, classify: Callable[[list[str]], list[tuple[str, float]]], profile: SiteProfile | None = None,
               state: SiteState | None = None, threshold: float = 0.5, today: _dt.date | None = None) -> Understanding:  # fmt: skip
    """Intents for an operator's text; ``classify`` maps masked clauses to (label, calibrated probability)."""
    today = today or _dt.date.today()
    found = clauses(text, profile, state)
    for clause, (label, prob) in zip(found, classify([c.masked() for c in found]) if found else []):
        clause.label, clause.prob = label, prob
        _collect(clause)
    _share_targets(found)
    lex = lexicon()
    site = profile.site if profile is not None else "site"
    notes: list[str] = []
    drafts: list[tuple[Clause, dict[str, Any]]] = []
    for clause in found:
        said = f"'{clause.text[:80]}'"
        if clause.label in ("question", "other", "negated", "context", "merged"):
            if clause.label == "question":
                notes.append(f"{said}: a question, not a request (ask it with netgptd ask)")
            elif clause.label == "negated":
                notes.append(f"{said}: a request not to act or to undo, which intents cannot express")
            elif clause.label == "other" and len(clause.pieces) > 2:
                notes.append(f"{said}: not a network action netgptd understands")
            continue
        if clause.prob < threshold:
            notes.append(f"{said}: unsure it asks to {clause.label.replace('_', ' ')} (confidence {clause.prob:.2f})")
            continue
        loose = [s for s in clause.spans if s.kind == "unresolved"]
        if loose:
            notes.append(f"{said}: cannot resolve " + ", ".join(f"'{s.words}'" for s in loose)
                         + (" (not in the site profile)" if any(s.value != "time" for s in loose) else ""))  # fmt: skip
            continue
        if not clause.has_targets():
            notes.append(f"{said}: no target (name an application, an address or a place of the site profile)")
            continue
        window, why = _window(clause.window, profile, today) if clause.window else (None, "")
        if why:
            notes.append(f"{said}: {why}")
            continue
        refs = list(dict.fromkeys(clause.targets["app"]))
        removed = {n for r in clause.targets["except"] for n in lex.ndpi_names(r)}
        apps = sorted({n for r in refs for n in lex.ndpi_names(r)} - removed)
        if refs and not apps:
            notes.append(f"{said}: the exceptions leave no application")
            continue
        hosts, nets = _unique(clause.targets["host"]), _unique(clause.targets["net"])
        if max(len(hosts), len(nets)) > MAX_ADDRESSES:
            notes.append(f"{said}: more than {MAX_ADDRESSES} hosts or subnets in one request (name a subnet instead)")
            continue
        target: dict[str, Any] = {}
        if apps:
            target["application"] = apps
        if hosts:
            target["host"] = [a for a, _ in hosts]
        if nets:
            target["subnet"] = [c for c, _ in nets]
        target["site"] = site
        intent: dict[str, Any] = {"action": clause.label, "target": target}
        if window:
            intent["window"] = window
        intent["reason"] = _reason(clause.label, [r[9:] if r.startswith("category:") else r for r in refs], hosts, nets, window)
        intent["confidence"] = round(clause.prob, 3)
        intent["source"] = "operator"
        hidden = unobservable(apps)
        if hidden:
            intent["unobservable"] = hidden
        drafts.append((clause, intent))
    intents = _one_action_per_target(drafts, notes)
    for intent in intents:
        validate(intent)
    return Understanding(intents, notes, found)


def _subject(donor: Clause, prefer_host: bool = False) -> Span | None:
    """The host or subnet a later "it" means: one said as the actor ("from 10.1.1.5", "someone at 10.1.1.5"),
    else the first one named; a host first when the reference says so ("ban that address")."""
    scopes = [s for s in donor.spans if s.kind in ("host", "net") and s.value in donor.targets[s.kind]]
    if prefer_host and any(s.kind == "host" for s in scopes):
        scopes = [s for s in scopes if s.kind == "host"]
    words = [p.text for p in donor.pieces]
    actor = next((s for s in scopes if s.start > 0 and words[s.start - 1] in ("from", "at", "by")), None)
    if actor or scopes:
        return actor or scopes[0]
    if donor.targets["host"] or donor.targets["net"]:  # the donor's own targets came from further back
        kind = "host" if donor.targets["host"] else "net"
        return Span(0, 0, kind, donor.targets[kind][0])
    return None


def _take(clause: Clause, donor: Clause, merge: bool) -> None:
    """``merge``: a fragment's targets join the clause. Else the clause refers back ("...; cut it off"): to the
    donor's subject, its first host or subnet, with its applications (isolating concerns the host alone)."""
    if merge:
        for kind in ("app", "host", "net", "except"):
            clause.targets[kind] = list(dict.fromkeys(clause.targets[kind] + donor.targets[kind]))
    elif ALL_OF_THEM & {p.text for p in clause.pieces}:  # "block both addresses"
        for kind in ("app", "host", "net", "except"):
            clause.targets[kind] = list(donor.targets[kind])
    else:
        scope = _subject(donor, prefer_host=bool(ADDRESS_WORDS & {p.text for p in clause.pieces}))
        clause.targets["host"] = [scope.value] if scope is not None and scope.kind == "host" else []
        clause.targets["net"] = [scope.value] if scope is not None and scope.kind == "net" else []
        if clause.label != "isolate" or not (clause.targets["host"] or clause.targets["net"]):
            clause.targets["app"], clause.targets["except"] = list(donor.targets["app"]), list(donor.targets["except"])
    clause.site_wide = clause.site_wide or donor.site_wide
    if merge:
        clause.window = clause.window or donor.window


def _share_targets(found: list[Clause]) -> None:
    """A short target-only fragment right after an action joins it ("block steam, and on the dorms too");
    then an action with no target takes the nearest earlier clause's targets, else the next context clause's
    ("someone at 10.1.1.5 is scanning us; cut it off")."""
    for k, clause in enumerate(found):
        prev = found[k - 1] if k else None
        words = {p.text for p in clause.pieces}
        fragment = (sum(p.kind == "word" for p in clause.pieces) - sum(s.end - s.start for s in clause.spans) <= 4
                    and not SUBJECTS & words)  # "and on the dorms too", not "it doesn't choke the gateway"
        if clause.window and not clause.has_targets() and fragment and clause.label not in actions():
            # "..., monday to friday", "..., rather than blocked, during the night shift": a window said apart
            # joins the nearest action in its sentence
            near = sorted((c for c in found if c.label in actions() and c.sentence == clause.sentence),
                          key=lambda c: abs(found.index(c) - k))  # fmt: skip
            if near:
                near[0].window = {**clause.window, **(near[0].window or {})}
                clause.label = "merged"
                continue
        nxt = found[k + 1] if k + 1 < len(found) else None
        if (clause.label == "context" and clause.has_targets() and fragment and prev is not None
                and prev.label in actions() and prev.sentence == clause.sentence):  # fmt: skip
            _take(prev, clause, merge=True)
            clause.label = "merged"
        elif (clause.label == "context" and clause.has_targets() and fragment and nxt is not None
              and nxt.label in actions() and nxt.sentence == clause.sentence):  # fmt: skip
            _take(nxt, clause, merge=True)  # "cameras - alert on any rtsp going out"
            clause.label = "merged"
    for k, clause in enumerate(found):
        if clause.label in actions() and clause.targets["app"] and not (clause.targets["host"] or clause.targets["net"]) \
                and PRONOUNS & {p.text for p in clause.pieces}:
            # "block smb to it", "block bittorrent there": the place is the one said before
            scoped = next((c for c in reversed(found[:k]) if c.targets["host"] or c.targets["net"]), None)
            if scoped is not None:
                clause.targets["host"], clause.targets["net"] = list(scoped.targets["host"]), list(scoped.targets["net"])
        elif clause.label in actions() and not clause.targets["app"] and (clause.targets["host"] or clause.targets["net"]) \
                and clause.label != "isolate" and {"it", "them"} & {p.text for p in clause.pieces}:
            # "netflix is being watched on the tablets ... block it on the ward": the application said before
            named = next((c for c in reversed(found[:k]) if c.targets["app"]), None)
            if named is not None:
                clause.targets["app"], clause.targets["except"] = list(named.targets["app"]), list(named.targets["except"])
        if clause.label not in actions() or clause.has_targets():
            continue
        donors = [c for c in reversed(found[:k]) if c.has_targets() and c.label in ("context", "question", *actions())]
        donors += [c for c in found[k + 1 :] if c.has_targets() and c.label == "context"]
        if donors:
            _take(clause, donors[0], merge=False)


def target_parts(intent: dict[str, Any]) -> set[str]:
    """An intent's target as application@scope pairs ("*" for every application, "site" for the whole site)."""
    t = intent["target"]
    apps = t.get("application") or ["*"]
    scopes = (t.get("host") or []) + (t.get("subnet") or []) or ["site"]
    return {f"{a}@{s}" for a in apps for s in scopes}


def contradicts(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two different enforcing actions on a shared target."""
    return a["action"] != b["action"] and {a["action"], b["action"]} <= ENFORCING and bool(target_parts(a) & target_parts(b))


def _one_action_per_target(drafts: list[tuple[Clause, dict[str, Any]]], notes: list[str]) -> list[dict[str, Any]]:
    """Equal requests merged; two different enforcing actions on one target: only the likelier is kept."""
    out: list[dict[str, Any]] = []
    keys: list[set[str]] = []
    dropped: set[int] = set()
    for clause, intent in drafts:
        parts = target_parts(intent)
        same = next((k for k, other in enumerate(out) if other["action"] == intent["action"] and keys[k] == parts
                     and other.get("window") == intent.get("window")), None)  # fmt: skip
        if same is not None:
            out[same]["confidence"] = max(out[same]["confidence"], intent["confidence"])
            continue
        clash = [k for k, other in enumerate(out) if k not in dropped and contradicts(other, intent)]
        if clash:  # one action per target: the likelier reading stays, the other is said and dropped
            if all(out[k]["confidence"] >= intent["confidence"] for k in clash):
                dropped.add(len(out))
                notes.append(f"'{clause.text[:80]}': another action on a target already asked for; the first kept")
            else:
                dropped.update(clash)
                notes.append(f"'{clause.text[:80]}': another action on a target asked for before; this likelier one kept")
        out.append(intent)
        keys.append(parts)
    return [i for k, i in enumerate(out) if k not in dropped]
