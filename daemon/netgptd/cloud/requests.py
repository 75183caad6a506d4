"""The ask protocol's messages: requests on ``<prefix>ask`` and the ``answer`` events that reply (pure).

A request is a JSON object ``{"id": "...", "question": "..."}`` (an answer is
wanted) or ``{"id": "...", "intent": "..."}`` (intents are wanted), signed
with ``requester``, ``ts``, ``nonce`` and ``sig`` (:mod:`netgptd.cloud.signing`);
an intent request may carry ``"confirm": true`` (:mod:`netgptd.cloud.guard`).
Plain text (or a bare JSON string) is an unsigned question with a fresh id.

What is not one of these is *malformed* (:class:`Malformed`, with a reason
from :data:`MALFORMED`): over ``max_bytes``, not UTF-8, a ``{`` that is not
JSON, nested too deep for the parser, unknown fields, fields of the wrong
type, both or neither of question and intent, part of the signature fields.
A malformed message is counted and dropped, never answered. A well-formed
request whose text cannot be taken (empty, too long) is refused with an
answer, once it is admitted: :func:`text_problem`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from netgptd.cloud.redact import Redactor
from netgptd.eve import timestamp

MAX_QUESTION = 4000  # characters
MAX_ID = 200
MAX_REQUEST_BYTES = 16384
QUESTION, INTENT = "question", "intent"  # what a request asks for: an answer, or intents to publish
SIGNATURE_FIELDS = ("requester", "ts", "nonce", "sig")
FIELDS = frozenset({"id", QUESTION, INTENT, "confirm", *SIGNATURE_FIELDS})
MAX_TS = 1e11  # Unix seconds: the year 5138 (also keeps NaN, infinities and huge integers out)
HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
MALFORMED = ("too_large", "not_utf8", "not_json", "too_deep", "bad_fields")  # the reasons, a fixed set
NOT_REDACTED = frozenset({"id", "status", "model", "finish_reason"})  # answer fields that hold no observed data


class Malformed(ValueError):
    """A message that is not a request: counted under ``reason`` (one of :data:`MALFORMED`) and dropped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """One well-formed request; ``fields`` is the JSON object as received (empty for plain text)."""

    id: str
    text: str
    kind: str = QUESTION
    confirm: bool = False
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def signed(self) -> bool:
        return "sig" in self.fields

    @property
    def requester(self) -> str:
        return str(self.fields.get("requester", ""))


def _type_errors(body: dict[str, Any]) -> list[str]:
    """What is wrong with a request object's fields (empty: nothing)."""
    problems = [f"unknown field {name!r}" for name in sorted(set(body) - FIELDS)]
    if (QUESTION in body) == (INTENT in body):
        problems.append("give exactly one of 'question' and 'intent'")
    kind = INTENT if INTENT in body else QUESTION
    if kind in body and not isinstance(body[kind], str):
        problems.append(f"{kind} must be a string")
    request_id = body.get("id")
    if request_id is not None and (not isinstance(request_id, (str, int)) or isinstance(request_id, bool)
                                   or len(str(request_id)) > MAX_ID):  # fmt: skip
        problems.append(f"id must be a string of at most {MAX_ID} characters")
    if not isinstance(body.get("confirm", False), bool):
        problems.append("confirm must be true or false")
    given = [name for name in SIGNATURE_FIELDS if name in body]
    if given and len(given) < len(SIGNATURE_FIELDS):
        problems.append(f"a signed request has all of {', '.join(SIGNATURE_FIELDS)}")
    elif given:
        if not isinstance(body["requester"], str) or not 0 < len(body["requester"]) <= 64:
            problems.append("requester must be a name of 1-64 characters")
        ts = body["ts"]
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not 0 <= ts < MAX_TS:
            problems.append("ts must be a number (Unix seconds)")
        if not isinstance(body["nonce"], str) or not 16 <= len(body["nonce"]) <= 128:
            problems.append("nonce must be a string of 16-128 characters")
        if not isinstance(body["sig"], str) or not HEX_SIGNATURE.fullmatch(body["sig"]):
            problems.append("sig must be 64 lowercase hex digits (HMAC-SHA256)")
    return problems


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_request(payload: bytes, max_bytes: int = MAX_REQUEST_BYTES) -> Request:
    """The request in an ask message; :class:`Malformed` for one that is not."""
    if len(payload) > max_bytes:
        raise Malformed("too_large", f"{len(payload):,} bytes; at most {max_bytes:,} are read")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Malformed("not_utf8", "not UTF-8") from None
    if not text.startswith(("{", '"')):  # plain text is the question itself
        return Request(str(uuid.uuid4()), text)
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed("too_deep", "JSON nested too deep") from None
    except ValueError as exc:
        raise Malformed("not_json", f"not JSON: {exc}") from None
    if isinstance(body, str):
        return Request(str(uuid.uuid4()), body.strip())
    if not isinstance(body, dict):
        raise Malformed("not_json", "not a JSON object")
    problems = _type_errors(body)
    if problems:
        raise Malformed("bad_fields", "; ".join(problems))
    request_id = body.get("id")
    request_id = str(request_id) if request_id not in (None, "") else str(uuid.uuid4())
    kind = INTENT if INTENT in body else QUESTION
    return Request(request_id, body[kind].strip(), kind, body.get("confirm", False), body)


def text_problem(request: Request) -> str:
    """Why the request's text cannot be taken ('' when it can); said in a ``rejected`` answer."""
    if not request.text:
        return (f"no {request.kind}: send {{\"id\": \"...\", \"question\": \"...\"}} or "
                f"{{\"id\": \"...\", \"intent\": \"...\"}}")  # fmt: skip
    if len(request.text) > MAX_QUESTION:
        return f"the {request.kind} is {len(request.text):,} characters; at most {MAX_QUESTION:,} are taken"
    return ""


def answer_event(request_id: str, question: str, prompt: str, text: str, model: str, latency_s: float,
                 status: str, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "timestamp": timestamp(time.time_ns()),
        "event_type": "answer",
        "answer": {"id": request_id, "question": question, "prompt": prompt, "text": text, "model": model,
                   "latency_s": round(latency_s, 3), "status": status, **extra},
    }  # fmt: skip


def redacted(event: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """An answer event with every address in its answer (question, text, prompt, intents, error) replaced by
    ``redactor``'s placeholders: the ones its prompt got, when the same redactor redacted it."""

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redactor.redact(value)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    answer = {k: v if k in NOT_REDACTED else scrub(v) for k, v in event["answer"].items()}
    return {**event, "answer": answer}


def with_intents(prompt: str, question: str, intents: list[dict[str, Any]]) -> str:
    """The completed prompt with the question's operator intents added under the context, before the question."""
    lines = ["", "Intents the edge model read in this question (schema-valid, not applied):"]
    lines += [f"- {json.dumps(i, separators=(',', ':'))}" for i in intents]
    question_line = f"\n\nOperator question: {question.strip()}"
    if not prompt.endswith(question_line):  # complete_prompt's layout changed: add them at the end
        return "\n".join([prompt, *lines])
    return "\n".join([prompt[: -len(question_line)], *lines]) + question_line
