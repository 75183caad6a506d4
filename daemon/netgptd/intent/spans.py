"""Operator text to pieces and entity spans: addresses, the profile's names, applications, windows, loose references.

Pure and closed: an entity is an address that parses, a name the site
profile (or the daemon's learned host names) holds, an application or
category of the lexicon, or a window the profile and the words give. What
looks like a reference but resolves to nothing (``"the guest network"``
without such a subnet, ``"my laptop"``, ``"tonight"`` without working hours)
becomes an *unresolved* span, so that the caller can say what it did not
understand instead of silently dropping it.

Typos: a word of five letters or more matches a lexicon or profile word one
edit away (insertion, deletion, substitution or swap of neighbours).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .apps import Lexicon, lexicon, words_of
from .profile import SiteProfile, SiteState

MIN_PREFIX_V4, MIN_PREFIX_V6 = 8, 16  # a network broader than this is not one site's: never a target
STRIP = ".,;:!?()[]{}\"'<>`*"
PIECE = re.compile(r"\d{1,2}:\d{2}(?=-\d{1,2}:\d{2})|-(?=\d{1,2}:\d{2})|\d{1,2}:\d{2}|[a-z0-9]+(?:['+.&/][a-z0-9]+)*\+?|[,;.!?:]")
DASHES = {"-", "--", "\u2013", "\u2014", "->", "=>", "\u2192"}
POSSESSIVE = re.compile(r"'s\b|(?<=s)'(?=\W|$)")


@dataclass
class Piece:
    text: str
    kind: str = "word"  # word | punct | ip | net
    value: str = ""


@dataclass
class Span:
    """Pieces ``start:end`` are one entity: ``kind`` app | host | net | site | window | unresolved."""

    start: int
    end: int
    kind: str
    value: Any
    words: str = ""


def _address(chunk: str) -> Piece | None:
    if not chunk or len(chunk) > 49 or not re.fullmatch(r"[0-9a-fA-F:.]+(/\d{1,3})?", chunk) or not re.search(r"\d", chunk):
        return None
    try:
        if "/" in chunk:
            net = ipaddress.ip_network(chunk, strict=False)
            if net.prefixlen < (MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6):
                return None
            return Piece(chunk, "net", str(net))
        return Piece(chunk, "ip", str(ipaddress.ip_address(chunk)))
    except ValueError:
        return None


def pieces_of(text: str) -> list[Piece]:
    """Words, sentence punctuation and addresses, lower-cased (NFKC), at most 4,000 characters read."""
    text = unicodedata.normalize("NFKC", str(text))[:4000].lower().replace("\u2019", "'")
    text = DAY_RANGE.sub(r"\1 to \2", text)  # "mon-fri": the hyphen would otherwise vanish
    out: list[Piece] = []
    for line in text.splitlines():
        for chunk in line.split():
            if chunk in DASHES:
                out.append(Piece(",", "punct"))  # "dorms pulling torrents - block it": a clause boundary
                continue
            chunk = POSSESSIVE.sub("", chunk)  # "the historian's traffic": the historian
            stripped = chunk.strip(STRIP)
            found = _address(stripped)
            if found:
                out.append(found)
                tail = chunk[chunk.index(stripped) + len(stripped):]
                out += [Piece(p, "punct") for p in PIECE.findall(tail) if p in ",;.!?"][:1]
                continue
            for p in PIECE.findall(chunk):
                if p == ":":  # "labs: quarantine 10.40.3.17": a label, then what to do with it
                    p = ","
                out.append(Piece(p, "punct" if p in ",;.!?" else "word"))
        if out and out[-1].kind != "punct":
            out.append(Piece(".", "punct"))  # a line break ends a sentence
    return out


def close(word: str, target: str) -> bool:
    """One edit apart (Damerau), for words of five letters or more."""
    if word == target:
        return True
    if min(len(word), len(target)) < 5 or abs(len(word) - len(target)) > 1:
        return False
    if len(word) == len(target):
        diff = [i for i in range(len(word)) if word[i] != target[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == target[diff[1]]
                                  and word[diff[1]] == target[diff[0]])  # fmt: skip
    short, long_ = sorted((word, target), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _plural(word: str, target: str) -> bool:
    return word == target + "s" or word == target + "es" or (target.endswith("s") and target[:-1] == word)


@dataclass
class Names:
    """Multi-word names to find in the text: word tuple -> (kind, value)."""

    table: dict[tuple[str, ...], tuple[str, Any]] = field(default_factory=dict)

    def add(self, words: list[str], kind: str, value: Any) -> None:
        if words:
            self.table.setdefault(tuple(words), (kind, value))

    def match(self, words: list[str], i: int) -> tuple[int, str, Any] | None:
        """The longest name at ``words[i:]`` (exact, plural, or one typo per word)."""
        best = None
        for key, (kind, value) in self.table.items():
            n = len(key)
            if i + n > len(words) or (best and n <= best[0]):
                continue
            span = words[i : i + n]
            if all(a == b or _plural(a, b) or (len(b) >= 6 and close(a, b)) for a, b in zip(span, key)):
                exact = sum(a == b for a, b in zip(span, key))
                if n > 1 or exact or span[0] not in COMMON:
                    best = (n, kind, value)
        return best


# everyday words a typo-tolerant match must never turn into a name ("teams" is a product, "team" is not)
COMMON = {"team", "those", "there", "these", "their", "where", "which", "while", "other", "about", "after", "again",
          "block", "allow", "check", "watch", "alert", "limit", "their", "whole", "every", "thing", "things", "steal",
          "games", "calls", "traffic", "please", "could", "would", "should", "today", "night", "hours", "stream",
          "drive", "store", "share", "shares", "update", "server", "servers", "network", "office"}  # fmt: skip

WINDOW_PHRASES: dict[str, list[str]] = {
    "working hours": ["working hours", "work hours", "business hours", "office hours", "during the day", "daytime",
                      "during work", "the workday", "the working day", "school hours", "opening hours", "daytime hours"],
    "after hours": ["after hours", "after-hours", "outside working hours", "outside business hours", "outside office hours",
                    "outside work hours", "out of hours", "off hours", "off-hours", "at night", "overnight", "nights",
                    "in the evening", "in the evenings", "evenings", "after work", "nightly", "every night"],
    "weekend": ["weekend", "weekends", "at the weekend", "on weekends", "saturday and sunday", "saturdays and sundays"],
    "tonight": ["tonight", "tonite", "this evening", "later tonight"],
}
TIME_WORDS = {"tomorrow", "morning", "mornings", "afternoon", "afternoons", "noon", "midnight", "lunch", "lunchtime",
              "today", "yesterday", "week", "month", "year", "minutes", "minute", "hour", "hours", "days", "day",
              "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "holidays", "holiday",
              "semester", "term", "shift", "shifts", "exams", "finals", "maintenance", "outage", "meeting", "match"}  # fmt: skip
PLACE_NOUNS = {"network", "subnet", "vlan", "wifi", "wi-fi", "lan", "segment", "floor", "building", "office", "lab",
               "labs", "dorm", "dorms", "room", "wing", "department", "branch", "ward", "clinic", "warehouse", "library",
               "campus", "site", "zone", "dmz", "classroom", "classrooms", "kitchen", "lobby", "reception", "annex"}  # fmt: skip
HOST_NOUNS = {"laptop", "pc", "computer", "machine", "box", "server", "phone", "printer", "camera", "device", "host",
              "workstation", "desktop", "tablet", "router", "switch", "nas", "kiosk", "tv", "console", "vm", "plc",
              "controller", "sensor", "nvr", "dvr", "ipad", "iphone", "projector", "scanner", "appliance"}  # fmt: skip
PLACE_PREPOSITIONS = {"in", "at", "inside", "within", "across"}
NOT_A_PLACE = {"board", "flows", "traffic", "data", "graphs", "graph", "numbers", "packets", "capture", "pcap",
               "screen", "top", "bottom", "back", "front", "line", "time", "latest", "most", "least", "meantime", "moment", "end", "logs", "log", "report", "dashboard", "queue", "edge", "firewall", "cloud",
               "background", "future", "past", "world", "same", "whole", "entire", "rest", "middle", "morning",
               "evening", "afternoon", "night", "day", "week", "weekend", "office", "list", "wild", "field",
               "beginning", "start", "interim", "process", "system", "sensor", "meanwhile", "long", "short"} | TIME_WORDS
SITE_WORDS = [["whole", "network"], ["entire", "network"], ["everyone"], ["everybody"], ["site", "wide"],
              ["site-wide"], ["network", "wide"], ["network-wide"], ["all", "users"], ["whole", "site"],
              ["everywhere"], ["whole", "company"]]  # fmt: skip
CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)?$")


def _clock(words: list[str], i: int) -> tuple[int, str] | None:
    """A time of day at ``words[i]`` ("22:00", "9pm", "9 pm", "9"), as (pieces used, "HH:MM")."""
    m = CLOCK.match(words[i]) if i < len(words) else None
    if not m:
        return None
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    used = 1
    if not half and i + 1 < len(words) and words[i + 1] in ("am", "pm"):
        half, used = words[i + 1], 2
    if not half and not m.group(2):
        return None  # a bare number is not a time
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return used, f"{hour:02d}:{minute:02d}"


DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
             "saturday": "sat", "sunday": "sun", "weekdays": None, "mon": "mon", "tue": "tue", "tues": "tue", "wed": "wed",
             "weds": "wed", "thu": "thu", "thur": "thu", "thurs": "thu", "fri": "fri", "sat": "sat", "sun": "sun"}  # fmt: skip
DAY_RANGE = re.compile(r"\b(mon|tue|wed|thu|fri|sat|sun)[a-z]*-(mon|tue|wed|thu|fri|sat|sun)[a-z]*\b")


WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _day_range(words: list[str], i: int) -> list[str] | None:
    """``monday to friday`` (through, till, until, -) -> the days, wrapping past Sunday."""
    if i + 2 >= len(words) or words[i + 1] not in ("to", "through", "thru", "till", "until", "-"):
        return None
    first, last = DAY_NAMES.get(words[i]), DAY_NAMES.get(words[i + 2])
    if not first or not last:
        return None
    a, b = WEEK.index(first), WEEK.index(last)
    return [WEEK[k % 7] for k in range(a, b + 1 if b >= a else b + 8)]


def _explicit_window(words: list[str], i: int) -> tuple[int, dict[str, Any]] | None:
    """``from|between T1 (to|and|until|-) T2`` -> a window (start, end)."""
    j = i + (words[i] in ("from", "between"))
    first = _clock(words, j)
    if not first:
        return None
    k = j + first[0]
    if k < len(words) and words[k] in ("to", "and", "until", "till", "-"):
        second = _clock(words, k + 1)
        if second:
            return k + 1 + second[0] - i, {"start": first[1], "end": second[1]}
    return None


def names_of(profile: SiteProfile | None, state: SiteState | None) -> Names:
    names = Names()
    if profile is not None:
        for name, cidr in profile.subnets.items():
            names.add(words_of(name), "net", (cidr, name))
        for name, address in profile.hosts.items():
            names.add(words_of(name), "host", (address, name))
        for name in profile.periods:
            names.add(words_of(name), "period", name)
    for name, address in (state.valid_hosts() if state else {}).items():
        names.add(words_of(name), "host", (address, None))  # a name learned from traffic is matched, never repeated
    return names


@lru_cache(maxsize=1)
def _typo_index() -> dict[tuple[str, ...], list[tuple[str, str]]]:
    """Product phrases by all their words but the last (which a typo may change), for :func:`_lexicon_match`."""
    out: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for phrase, ref in lexicon().phrases.items():
        if not ref.startswith("category:") and len(phrase[-1]) >= 5:
            out.setdefault(phrase[:-1], []).append((phrase[-1], ref))
    return out


def _lexicon_match(lex: Lexicon, words: list[str], i: int) -> tuple[int, str] | None:
    for n in range(min(lex.longest, len(words) - i), 0, -1):
        key = tuple(words[i : i + n])
        ref = lex.phrases.get(key)
        if ref is None and key[-1].endswith("s"):
            ref = lex.phrases.get((*key[:-1], key[-1][:-1]))
        if ref is None and n > 1:  # "crypto miner": the alias says "crypto miners"
            ref = lex.phrases.get((*key[:-1], key[-1] + "s"))
        if ref is None and len(key[-1]) >= 6 and key[-1] not in COMMON:  # a typo in a product's name, never a category's
            ref = next((r for last, r in _typo_index().get(key[:-1], ()) if close(key[-1], last)), None)
        if ref is not None:
            return n, ref
    return None


def find_spans(pieces: list[Piece], profile: SiteProfile | None, state: SiteState | None) -> list[Span]:
    """Entity spans over ``pieces``, left to right, longest first, never overlapping."""
    lex = lexicon()
    names = names_of(profile, state)
    words = [p.text if p.kind in ("word", "punct") else "\0" for p in pieces]
    spans: list[Span] = []
    i = 0
    while i < len(pieces):
        p = pieces[i]
        if p.kind in ("ip", "net"):
            spans.append(Span(i, i + 1, "host" if p.kind == "ip" else "net", (p.value, None), p.text))
            i += 1
            continue
        if p.kind == "punct":
            i += 1
            continue
        found = names.match(words, i)
        if found:
            n, kind, value = found
            spans.append(Span(i, i + n, "window" if kind == "period" else kind,
                              {"period": value} if kind == "period" else value, " ".join(words[i : i + n])))  # fmt: skip
            i += n
            continue
        explicit = _explicit_window(words, i)
        if explicit:
            spans.append(Span(i, i + explicit[0], "window", {"clock": explicit[1]}, " ".join(words[i : i + explicit[0]])))
            i += explicit[0]
            continue
        window = _window_phrase(words, i)
        if window:
            n, label = window
            spans.append(Span(i, i + n, "window", {"relative": label}, " ".join(words[i : i + n])))
            i += n
            continue
        site = next((len(s) for s in SITE_WORDS if words[i : i + len(s)] == s), 0)
        if site:
            spans.append(Span(i, i + site, "site", None, " ".join(words[i : i + site])))
            i += site
            continue
        app = _lexicon_match(lex, words, i)
        if app:
            spans.append(Span(i, i + app[0], "app", app[1], " ".join(words[i : i + app[0]])))
            i += app[0]
            continue
        days = _day_range(words, i)
        if days:
            spans.append(Span(i, i + 3, "window", {"days": days}, " ".join(words[i : i + 3])))
            i += 3
            continue
        if (words[i] in DAY_NAMES or (words[i].endswith("s") and words[i][:-1] in DAY_NAMES)) and words[i - 1 : i] != ["until"] \
                and words[i - 1 : i] not in (["till"], ["by"], ["since"], ["last"], ["next"]):  # "until monday" is no window
            day = DAY_NAMES.get(words[i], DAY_NAMES.get(words[i][:-1]))
            spans.append(Span(i, i + 1, "window", {"days": [day] if day else ["mon", "tue", "wed", "thu", "fri"]}, words[i]))
            i += 1
            continue
        i += 1
    site_words = set(words_of(profile.site.replace("-", " "))) if profile is not None else set()
    return spans + _unresolved(pieces, words, spans, site_words)


def _window_phrase(words: list[str], i: int) -> tuple[int, str] | None:
    best = None
    for label, phrases in WINDOW_PHRASES.items():
        for phrase in phrases:
            key = phrase.split()
            if words[i : i + len(key)] == key and (best is None or len(key) > best[0]):
                best = (len(key), label)
    return best


DETERMINERS = {"the", "our", "my", "that", "this", "his", "her", "their", "your", "a", "an", "some"}
ANAPHORA = {"that", "this", "these", "those", "same"}
NOT_A_TIME = {"it", "they", "we", "you", "i", "he", "she", "further", "then", "now", "notice", "everything", "someone",
              "somebody", "its", "that", "this", "those", "these", "next", "told", "fixed", "done", "resolved", "then"}  # fmt: skip
NEAR_ADDRESS = {"at", "on", "with", "ip", "address", "of", "in", "(", "is", "="}
WHOLE_NETWORK = {"network", "site", "lan", "internet", "wifi", "wireless", "uplink", "wan", "link", "bandwidth", "net"}
GENERIC = {"whole", "entire", "corporate", "company", "internal", "local", "main", "wired", "campus", "clinic", "school",
           "hospital", "plant", "factory", "uni", "university", "college", "corp", "enterprise"}  # "the clinic network": the site itself


def _next_to_address(pieces: list[Piece], words: list[str], start: int, end: int) -> bool:
    """``the box 10.1.1.5``, ``the box at 10.1.1.5``, ``10.1.1.5 (the printer)``: a description of an address."""
    j = end
    while j < len(words) and j < end + 3 and words[j] in NEAR_ADDRESS | DETERMINERS:
        j += 1
    if j < len(pieces) and pieces[j].kind in ("ip", "net"):
        return True
    return start > 0 and pieces[start - 1].kind in ("ip", "net")


def _unresolved(pieces: list[Piece], words: list[str], spans: list[Span], site_words: set[str]) -> list[Span]:
    """Place, host and time references that no entity covers: ``the guest network``, ``my laptop``, ``tomorrow``."""
    covered = {k for s in spans for k in range(s.start, s.end)}
    out: list[Span] = []
    for i, w in enumerate(words):
        if i in covered or pieces[i].kind != "word" or i == 0:
            continue
        prev = words[i - 1]
        noun = w[:-1] if w.endswith("s") and w[:-1] in PLACE_NOUNS | HOST_NOUNS else w  # "the controllers"
        if prev == "the" and i > 1 and words[i - 2] in PLACE_PREPOSITIONS and noun not in PLACE_NOUNS | HOST_NOUNS \
                and w not in NOT_A_PLACE and (i - 2) not in covered and not (i + 1 < len(words) and (i + 1) in covered):
            out.append(Span(i - 1, i + 1, "unresolved", "place", " ".join(words[i - 1 : i + 1])))  # "in the gym"
            continue
        if noun in PLACE_NOUNS | HOST_NOUNS and (i - 1) not in covered and pieces[i - 1].kind == "word":
            w = noun
            if w in WHOLE_NETWORK and (prev in DETERMINERS | GENERIC or prev in site_words):
                continue  # "the network", "the clinic network": the whole site
            if (w in GENERIC or w in site_words) and words[i + 1 : i + 2] and words[i + 1] in WHOLE_NETWORK:
                continue  # "the clinic network", read at "clinic"
            if prev in ANAPHORA:
                continue  # "that host", "this box": the one said before (a pronoun)
            if w in GENERIC or w in site_words:
                continue  # "anywhere at the clinic": the site itself
            if prev not in DETERMINERS and (i < 2 or words[i - 2] not in DETERMINERS):
                continue  # "cut the lab off" has one; "network traffic", "home network" without one are not references
            start = i - 1
            if prev not in DETERMINERS:  # "the guest network": the modifier and its determiner
                start -= words[i - 2] in DETERMINERS
            if not _next_to_address(pieces, words, start, i + 1):
                out.append(Span(start, i + 1, "unresolved", "place" if w in PLACE_NOUNS else "host", " ".join(words[start : i + 1])))
        elif w in TIME_WORDS and (prev in ("during", "this", "next", "every", "for", "over", "an", "a",
                                           "one", "two", "few", "the") or w in ("tomorrow", "today")):  # fmt: skip
            start = i - 1 if prev in ("during", "next", "this", "every", "for") else i
            out.append(Span(start, i + 1, "unresolved", "time", " ".join(words[start : i + 1])))
        elif prev == "during" and w not in DETERMINERS | NOT_A_TIME:
            out.append(Span(i - 1, i + 1, "unresolved", "time", " ".join(words[i - 1 : i + 1])))
        elif prev == "the" and i > 1 and words[i - 2] == "during":
            out.append(Span(i - 2, i + 1, "unresolved", "time", " ".join(words[i - 2 : i + 1])))
    return out
