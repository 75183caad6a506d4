"""Every alert's signature: the one table of ids, categories and severities.

Suricata's tooling keys alerts by ``alert.signature_id`` (EveBox groups by
it, Filebeat maps it to ``rule.id``), so each rule detector and each attack
class the model can name has a stable id here, in the range Suricata leaves
for local rules (1,000,000-1,999,999), generator id 1, revision 1. An id is
never reused: a changed meaning gets a new id (or a new ``rev``). The
README's "EVE signatures" table is :func:`markdown_table` (a test keeps them
equal).
"""

from __future__ import annotations

from dataclasses import dataclass

GID = 1
RULE = "rule"
MODEL = "model"


@dataclass(frozen=True)
class Signature:
    sid: int
    detector: str  # RULE or MODEL
    name: str  # the rule's name, or the model's attack class
    category: str
    severity: int  # Suricata's: 1 is the most severe
    message: str  # alert.signature
    rev: int = 1


SIGNATURES: tuple[Signature, ...] = (
    Signature(1_000_001, RULE, "syn_flood", "dos", 1, "NETGPT DOS SYN flood"),
    Signature(1_000_002, RULE, "synack_reflection", "dos", 1, "NETGPT DOS SYN-ACK reflection flood"),
    Signature(1_000_003, RULE, "udp_flood", "dos", 1, "NETGPT DOS UDP flood"),
    Signature(1_000_004, RULE, "port_sweep", "scan", 2, "NETGPT SCAN port sweep"),
    Signature(1_000_005, RULE, "host_sweep", "scan", 2, "NETGPT SCAN host sweep"),
    Signature(1_000_006, RULE, "bruteforce", "bruteforce", 1, "NETGPT BRUTEFORCE many short logins to one service"),
    Signature(1_000_007, RULE, "udp_reflection", "dos", 1, "NETGPT DOS UDP reflection flood"),
    Signature(1_000_101, MODEL, "mining", "mining", 2, "NETGPT MODEL cryptocurrency mining"),
    Signature(1_000_102, MODEL, "tunnel", "tunnel", 2, "NETGPT MODEL tunnelled traffic"),
    Signature(1_000_103, MODEL, "webattack", "webattack", 1, "NETGPT MODEL web attack"),
    Signature(1_000_104, MODEL, "dos", "dos", 1, "NETGPT MODEL denial of service"),
    Signature(1_000_105, MODEL, "bruteforce", "bruteforce", 1, "NETGPT MODEL brute force"),
    Signature(1_000_106, MODEL, "scan", "scan", 2, "NETGPT MODEL scan"),
    Signature(1_000_199, MODEL, "*", "", 3, "NETGPT MODEL attack of a class not listed here"),
)  # fmt: skip

RULE_SIGNATURES = {s.name: s for s in SIGNATURES if s.detector == RULE}
MODEL_SIGNATURES = {s.name: s for s in SIGNATURES if s.detector == MODEL}


def model_signature(attack: str) -> Signature:
    """The signature of a model alert; an attack class not listed shares the catch-all id, its category its own."""
    known = MODEL_SIGNATURES.get(attack)
    if known is not None:
        return known
    other = MODEL_SIGNATURES["*"]
    return Signature(other.sid, MODEL, attack, attack, other.severity, other.message, other.rev)


def markdown_table() -> str:
    """The README's table of signatures."""
    rows = ["| signature_id | detector | name | category | severity | signature |", "| --- | --- | --- | --- | --- | --- |"]
    for s in SIGNATURES:
        name = "any other attack class" if s.name == "*" else f"`{s.name}`"
        category = s.category or "the attack class"
        rows.append(f"| {s.sid} | {s.detector} | {name} | {category} | {s.severity} | {s.message} |")
    return "\n".join(rows)
