"""The ask protocol's messages: requests on ``<prefix>ask`` and the ``answer`` events that reply (pure).

A request is JSON ``{"id": "...", "question": "..."}`` (an answer is wanted),
``{"id": "...", "intent": "..."}`` (intents are wanted), or plain text (a
question; its id is a fresh UUID). One that cannot be answered but has an id
is refused with a ``rejected`` answer; one without even that is noise.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from netgptd.eve import timestamp

MAX_QUESTION = 4000  # characters
MAX_ID = 200


class RequestRefused(ValueError):
    """A request that gets a ``rejected`` answer (it has an id to answer to)."""

    def __init__(self, request_id: str, question: str, reason: str) -> None:
        super().__init__(reason)
        self.request_id, self.question = request_id, question


QUESTION, INTENT = "question", "intent"  # what a request asks for: an answer, or intents to publish


def parse_request(payload: bytes) -> tuple[str, str, str]:
    """(id, text, kind) of an ask message; RequestRefused for one that cannot be answered, ValueError for noise."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    body: Any = None
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            body = None
    if not isinstance(body, dict):  # plain text (or a bare JSON string) is the question itself
        if text.startswith('"'):
            try:
                text = str(json.loads(text)).strip()
            except (ValueError, RecursionError):
                pass
        body = {"question": text}
    request_id = body.get("id")
    if request_id is None or request_id == "":
        request_id = str(uuid.uuid4())
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool) or len(str(request_id)) > MAX_ID:
        raise ValueError(f"id must be a string of at most {MAX_ID} characters")
    request_id = str(request_id)
    kind = INTENT if "intent" in body and "question" not in body else QUESTION
    question = body.get(kind)
    if not isinstance(question, str) or not question.strip():
        raise RequestRefused(request_id, "", f"no {kind}: send {{\"id\": \"...\", \"question\": \"...\"}}, "
                                             f"{{\"id\": \"...\", \"intent\": \"...\"}} or plain text")
    if len(question) > MAX_QUESTION:
        raise RequestRefused(request_id, question[:200], f"the question is {len(question):,} characters; "
                                                         f"at most {MAX_QUESTION:,} are taken")  # fmt: skip
    return request_id, question.strip(), kind


def answer_event(request_id: str, question: str, prompt: str, text: str, model: str, latency_s: float,
                 status: str, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "timestamp": timestamp(time.time_ns()),
        "event_type": "answer",
        "answer": {"id": request_id, "question": question, "prompt": prompt, "text": text, "model": model,
                   "latency_s": round(latency_s, 3), "status": status, **extra},
    }  # fmt: skip


def with_intents(prompt: str, question: str, intents: list[dict[str, Any]]) -> str:
    """The completed prompt with the question's operator intents added under the context, before the question."""
    lines = ["", "Intents the edge model read in this question (schema-valid, not applied):"]
    lines += [f"- {json.dumps(i, separators=(',', ':'))}" for i in intents]
    question_line = f"\n\nOperator question: {question.strip()}"
    if not prompt.endswith(question_line):  # complete_prompt's layout changed: add them at the end
        return "\n".join([prompt, *lines])
    return "\n".join([prompt[: -len(question_line)], *lines]) + question_line
