"""The edge LLM's token language: vocabulary, input preparation, and the output grammar.

Input. Operator text is lower-cased and split into words. Addresses and
networks written in the text, and the names of the profile's subnets, hosts
and periods (and host names the daemon learned, :class:`SiteState`), are
replaced by *pointer* tokens (``<ip0>``, ``<net0>``, ``<per0>`` ... in order
of appearance). A word outside the vocabulary becomes one of 32 hashed
``<unkN>`` tokens, so no string from the input can ever become an output
token. Window summaries are written as feature tokens (``app:TLS q3``,
``cat:scan n4 <ip0> <ip1>``).

Output. An intent is ``act:ACTION`` then targets in canonical order (groups
and applications, then host pointers, then subnet pointers; each at most
once, so the output is finite), then optionally one window token
(``<perN>``, ``win:work``, ``win:after``, ``win:weekend``), then ``;`` (next
intent) or ``<eos>``. :class:`Grammar` is that language as a finite-state
machine over token ids: :meth:`Grammar.allowed` lists the ids that keep the
output a valid prefix, which is all the constrained decoder may pick from.
Pointers are allowed only when the input holds them: hosts and subnets are
copied, never invented.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .profile import SiteProfile, SiteState
from .schema import actions

N_UNK, N_IP, N_NET, N_PER = 32, 8, 8, 4
MAX_PROMPT = 72
MAX_INTENTS = 4
MIN_PREFIX_V4, MIN_PREFIX_V6 = 8, 16  # a network written in text broader than this is not taken as a target

# The application classes this small LM reads and writes: NetGPT's app labels (less ``unknown``) when it
# was trained. Its vocabulary is fixed by them; operator sentences name any nDPI application (``nlu``).
MODEL_APPS = ["BitTorrent", "DNS", "DNScrypt", "Discord", "Dropbox", "Gnutella", "HTTP", "Kerberos", "LLMNR", "MDNS", "Mining",
              "NetBIOS", "QUIC", "SSDP", "STUN", "TLS", "WhatsApp"]  # fmt: skip

# Documented alias table: group -> NetGPT application classes. An operator's
# "video calls" is the group "conferencing"; an intent always lists classes.
GROUPS: dict[str, list[str]] = {
    "conferencing": ["Discord", "STUN", "WhatsApp"],
    "messaging": ["Discord", "WhatsApp"],
    "p2p": ["BitTorrent", "Gnutella"],
    "cloud": ["Dropbox"],
    "web": ["HTTP", "QUIC", "TLS"],
    "nameservice": ["DNS", "DNScrypt", "LLMNR", "MDNS", "NetBIOS"],
    "discovery": ["LLMNR", "MDNS", "NetBIOS", "SSDP"],
}
ALERT_CATEGORIES = ["dos", "scan", "bruteforce", "mining", "webattack", "tunnel", "other"]
WINDOW_WORDS = ["win:work", "win:after", "win:weekend"]
FEATURES = ["q1", "q2", "q3", "q4", "q5", "n1", "n2", "n3", "n4", "alert", "attack", "src", "dst"]


def special_tokens() -> list[str]:
    """The fixed part of the vocabulary, in an order the grammar relies on (groups < apps < ip < net)."""
    return (["<pad>", "<op>", "<obs>", "<sep>", "<eos>", ";"] + [f"<unk{i}>" for i in range(N_UNK)]
            + [f"act:{a}" for a in actions()] + [f"grp:{g}" for g in GROUPS] + [f"app:{a}" for a in MODEL_APPS]
            + [f"<ip{i}>" for i in range(N_IP)] + [f"<net{i}>" for i in range(N_NET)] + [f"<per{i}>" for i in range(N_PER)]
            + WINDOW_WORDS + [f"cat:{c}" for c in ALERT_CATEGORIES] + FEATURES)  # fmt: skip


class Vocab:
    def __init__(self, words: Iterable[str] = ()):
        fixed = special_tokens()
        extra = sorted(set(words) - set(fixed))
        self.tokens = fixed + extra
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.ids[token]

    def word_id(self, word: str) -> int:
        """A word's id, or its hashed unknown bucket (stable across runs and machines)."""
        if word in self.ids and not word.startswith("<") and ":" not in word:
            return self.ids[word]
        return self.ids[f"<unk{zlib.crc32(word.encode('utf-8')) % N_UNK}>"]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"format": "netgptd-intent-vocab-1", "tokens": self.tokens}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        vocab = cls()
        if data.get("format") != "netgptd-intent-vocab-1" or data["tokens"][: len(vocab.tokens)] != vocab.tokens:
            raise ValueError(f"{path}: vocabulary does not match this version of netgptd")
        vocab.tokens = list(data["tokens"])
        vocab.ids = {t: i for i, t in enumerate(vocab.tokens)}
        return vocab


# ---------------------------------------------------------------- input side

WORD = re.compile(r"[a-z]+|[0-9]+")
PIECE = re.compile(r"[a-z]+|[0-9]+|[,;.:!?]")  # punctuation marks a boundary, all as ","
STRIP = ".,;:!?()[]{}\"'<>`*"


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _address(chunk: str) -> tuple[str, str] | None:
    """('ip', address) or ('net', cidr) when the chunk is one, else None."""
    if not chunk or len(chunk) > 49 or not re.fullmatch(r"[0-9a-fA-F:.]+(/\d{1,3})?", chunk):
        return None
    try:
        if "/" in chunk:
            net = ipaddress.ip_network(chunk, strict=False)
            if net.prefixlen < (MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6):
                return None  # broader than any one site's network: never a target
            return "net", str(net)
        return "ip", str(ipaddress.ip_address(chunk))
    except ValueError:
        return None


@dataclass
class Context:
    """What the pointers of one input stand for."""

    ips: list[str] = field(default_factory=list)
    nets: list[tuple[str, str | None]] = field(default_factory=list)  # (cidr, profile name or None)
    periods: list[str] = field(default_factory=list)  # profile period names

    def pointer(self, kind: str, value: Any) -> str | None:
        table, cap = {"ip": (self.ips, N_IP), "net": (self.nets, N_NET), "per": (self.periods, N_PER)}[kind]
        if value not in table:
            if len(table) >= cap:
                return None
            table.append(value)
        return f"<{kind}{table.index(value)}>"


def prepare_text(sentence: str, profile: SiteProfile, state: SiteState | None = None) -> tuple[list[str], Context]:
    """The prompt tokens (strings) of an operator sentence, and what their pointers stand for."""
    text = unicodedata.normalize("NFKC", str(sentence))[:4000].lower()
    pieces: list[tuple[str, Any] | str] = []  # words, or (kind, value) addresses
    for chunk in text.split():
        stripped = chunk.strip(STRIP)
        found = _address(stripped)
        if found:
            pieces.append(found)
            if any(c in ",;.:!?" for c in chunk[chunk.index(stripped) + len(stripped):]):
                pieces.append(",")
        else:
            for p in PIECE.findall(chunk):
                p = "," if p in ",;.:!?" else p
                if not (p == "," and pieces and pieces[-1] == ","):
                    pieces.append(p)
    names: list[tuple[list[str], str, Any]] = []
    for name, cidr in profile.subnets.items():
        names.append((words_of(name), "net", (cidr, name)))
    for name, address in {**(state.valid_hosts() if state else {}), **profile.hosts}.items():
        names.append((words_of(name), "ip", address))
    for name in profile.periods:
        names.append((words_of(name), "per", name))
    names = sorted((n for n in names if n[0]), key=lambda n: (-len(n[0]), -len("".join(n[0]))))
    ctx = Context()
    out: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        if isinstance(piece, tuple):
            kind, value = piece
            out.append(ctx.pointer(kind, (value, None) if kind == "net" else value) or "<unk0>")
            i += 1
            continue
        for name_words, kind, value in names:
            span = pieces[i : i + len(name_words)]
            if span == name_words or (span[:-1] == name_words[:-1] and span and span[-1] == name_words[-1] + "s"):
                out.append(ctx.pointer(kind, value) or "<unk0>")
                i += len(name_words)
                break
        else:
            out.append(piece)
            i += 1
    return out[:MAX_PROMPT], ctx


def encode_prompt(vocab: Vocab, task: str, tokens: list[str]) -> list[int]:
    ids = [vocab.id("<op>" if task == "op" else "<obs>")]
    for t in tokens:
        ids.append(vocab.ids[t] if (t.startswith("<") or ":" in t or t in FEATURES) and t in vocab.ids else vocab.word_id(t))
    return ids + [vocab.id("<sep>")]


# ---------------------------------------------------------------- output side


@dataclass(frozen=True)
class GState:
    n: int = 0  # intents finished
    phase: str = "start"  # start | targets | windowed | done
    last: int = -1  # last target id in this intent
    has_target: bool = False


class Grammar:
    """The output language as a finite-state machine over token ids."""

    def __init__(self, vocab: Vocab, n_ip: int = 0, n_net: int = 0, n_per: int = 0, window: bool = True,
                 max_intents: int = MAX_INTENTS):  # fmt: skip
        v = vocab
        self.vocab = vocab
        self.acts = [v.id(f"act:{a}") for a in actions()]
        self.targets = ([v.id(f"grp:{g}") for g in GROUPS] + [v.id(f"app:{a}") for a in MODEL_APPS]
                        + [v.id(f"<ip{i}>") for i in range(min(n_ip, N_IP))]
                        + [v.id(f"<net{i}>") for i in range(min(n_net, N_NET))])  # fmt: skip
        assert self.targets == sorted(self.targets)
        self.windows = ([v.id(f"<per{i}>") for i in range(min(n_per, N_PER))] + [v.id(w) for w in WINDOW_WORDS]) if window else []
        self.semi, self.eos = v.id(";"), v.id("<eos>")
        self.max_intents = max_intents
        self._target_set, self._window_set = set(self.targets), set(self.windows)

    def start(self) -> GState:
        return GState()

    def allowed(self, st: GState) -> list[int]:
        if st.phase == "done":
            return []
        if st.phase == "start":
            return (self.acts if st.n < self.max_intents else []) + [self.eos]
        more = [self.semi] if st.n + 1 < self.max_intents else []
        if st.phase == "windowed":
            return more + [self.eos]
        nxt = [t for t in self.targets if t > st.last]
        if not st.has_target:
            return nxt
        return nxt + self.windows + more + [self.eos]

    def step(self, st: GState, tok: int) -> GState:
        if tok not in self.allowed(st):
            raise ValueError(f"token {self.vocab.tokens[tok]!r} not allowed in {st}")
        if tok == self.eos:
            return GState(st.n + (st.phase != "start"), "done")
        if tok == self.semi:
            return GState(st.n + 1, "start")
        if st.phase == "start":
            return GState(st.n, "targets")
        if tok in self._target_set:
            return GState(st.n, "targets", tok, True)
        return GState(st.n, "windowed", st.last, True)

    def accepts(self, ids: list[int]) -> bool:
        st = self.start()
        try:
            for t in ids:
                st = self.step(st, t)
        except ValueError:
            return False
        return st.phase == "done"


@dataclass
class RawIntent:
    """One intent as tokens (before pointers are resolved)."""

    action: str
    targets: list[str]
    window: str | None = None


def parse_output(vocab: Vocab, ids: list[int]) -> list[RawIntent]:
    """Split a grammar-accepted output into intents."""
    out: list[RawIntent] = []
    for tok in (vocab.tokens[i] for i in ids):
        if tok in ("<eos>", ";"):
            continue
        if tok.startswith("act:"):
            out.append(RawIntent(tok[4:], []))
        elif tok.startswith(("<per",)) or tok.startswith("win:"):
            out[-1].window = tok
        else:
            out[-1].targets.append(tok)
    return out


def output_tokens(intents: list[RawIntent]) -> list[str]:
    """The canonical token string of a list of raw intents (targets sorted in grammar order)."""
    order = {t: i for i, t in enumerate(special_tokens())}
    toks: list[str] = []
    for k, it in enumerate(intents):
        if k:
            toks.append(";")
        toks.append(f"act:{it.action}")
        toks += sorted(set(it.targets), key=order.__getitem__)
        if it.window:
            toks.append(it.window)
    return toks + ["<eos>"]
