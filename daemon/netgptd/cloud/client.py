"""A client for an OpenAI-compatible ``/v1/chat/completions`` (the cloud LLM, vLLM, ``netgptd serve-llm``).

Stdlib only (``urllib.request``), blocking: call it from a worker thread
(``asyncio.to_thread``), never from the pipeline's loop.

Each attempt has ``timeout`` seconds (connect, and each read). A connection
error, a timeout, a 5xx, a 408 or a 429 is retried up to ``retries`` times
after a jittered backoff doubling from ``backoff_initial`` to ``backoff_max``
seconds (a ``Retry-After`` of a 429 or 503 is honoured up to ``backoff_max``);
any other 4xx is the request's fault and is not retried. The API key (from a
file or an environment variable, never the configuration itself) goes in an
``Authorization: Bearer`` header and is never logged.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import structlog

from netgptd.files import describe

log = structlog.get_logger(__name__)

RETRY_STATUS = {408, 429}  # and every 5xx
MAX_ERROR_TEXT = 300


class CloudError(Exception):
    """The cloud LLM gave no answer; ``kind`` is timeout, connection, http or response."""

    def __init__(self, message: str, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status

    @property
    def retryable(self) -> bool:
        if self.kind in ("timeout", "connection"):
            return True
        return self.kind == "http" and self.status is not None and (self.status >= 500 or self.status in RETRY_STATUS)


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    finish_reason: str
    usage: dict[str, int]
    latency_s: float  # all attempts and backoffs
    attempts: int


class _Failed(Exception):
    """One attempt's CloudError, with the server's Retry-After (seconds) if it sent one."""

    def __init__(self, error: CloudError, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error, self.retry_after = error, retry_after


def endpoint(url: str) -> str:
    """The chat-completions URL of a base URL: ``http://host:8000`` and ``.../v1`` both work, a full one too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cloud_url: must be an http:// or https:// URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"cloud_url: takes no query or fragment ({url!r})")
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        return url
    if not path:
        path = "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}/chat/completions"


def api_key_from(api_key_file: str = "", api_key_env: str = "") -> str:
    """The API key from a file (first line) or the environment variable named; '' for neither."""
    if api_key_file and api_key_env:
        raise ValueError("api_key_file and api_key_env: give one of them")
    if api_key_file:
        try:
            with open(api_key_file, encoding="utf-8") as stream:
                key = stream.readline().strip()
        except OSError as exc:
            raise ValueError(f"api_key_file: {api_key_file}: {describe(exc)}") from None
        if not key:
            raise ValueError(f"api_key_file: {api_key_file} is empty")
        return key
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ValueError(f"api_key_env: the environment variable {api_key_env} is not set or empty")
        return key
    return ""


@dataclass
class CloudClient:
    """Chat completions from one endpoint, with its counters (thread-safe)."""

    url: str
    model: str = ""  # sent as "model"; '' leaves it out (serve-llm and vLLM with one model accept that)
    api_key: str = field(default="", repr=False)
    timeout: float = 30.0
    retries: int = 2
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_tokens: int = 512
    temperature: float = 0.2
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self.endpoint = endpoint(self.url)
        if not self.timeout > 0:
            raise ValueError(f"timeout: must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries: must not be negative, got {self.retries}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError(f"backoff_initial, backoff_max: need 0 < {self.backoff_initial} <= {self.backoff_max}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be at least 1, got {self.max_tokens}")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature: must be between 0 and 2, got {self.temperature}")
        self.counters: Counter[str] = Counter()  # requests, answers, attempts, retries, failures, errors_<kind>
        self._lock = threading.Lock()

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self.counters[key] += 1

    def status(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def chat(self, messages: list[dict[str, str]], max_tokens: int | None = None,
             temperature: float | None = None) -> ChatResult:  # fmt: skip
        """One chat completion; :class:`CloudError` once the attempts are used up (or at once for a 4xx)."""
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens or self.max_tokens,
                                "temperature": self.temperature if temperature is None else temperature,
                                "stream": False}  # fmt: skip
        if self.model:
            body["model"] = self.model
        data = json.dumps(body).encode()
        self._count("requests")
        started = time.monotonic()
        delay = self.backoff_initial
        for attempt in range(1, self.retries + 2):
            self._count("attempts")
            try:
                reply = self._post(data)
            except _Failed as failure:
                error = failure.error
                self._count(f"errors_{error.kind}")
                if not error.retryable or attempt > self.retries:
                    self._count("failures")
                    log.warning("cloud_failed", endpoint=self.endpoint, attempts=attempt, kind=error.kind,
                                status=error.status, error=str(error))  # fmt: skip
                    raise error from None
                wait = random.uniform(delay / 2, delay)
                if failure.retry_after is not None:
                    wait = min(max(failure.retry_after, wait), self.backoff_max)
                delay = min(delay * 2, self.backoff_max)
                self._count("retries")
                log.info("cloud_retry", endpoint=self.endpoint, attempt=attempt, kind=error.kind, status=error.status,
                         error=str(error), retry_in=round(wait, 2))  # fmt: skip
                self.sleep(wait)
                continue
            try:
                result = _parse(reply)
            except CloudError as error:
                self._count("errors_response", "failures")
                raise error from None
            self._count("answers")
            return ChatResult(**result, latency_s=round(time.monotonic() - started, 3), attempts=attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, data: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _Failed(CloudError(f"HTTP {exc.code}: {_error_text(exc)}", "http", exc.code),
                                  _retry_after(exc)) from None  # fmt: skip
        except (TimeoutError, socket.timeout) as exc:
            raise _Failed(CloudError(f"no answer within {self.timeout:g} s ({exc or 'timed out'})", "timeout"))
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise _Failed(CloudError(f"no answer within {self.timeout:g} s", "timeout")) from None
            raise _Failed(CloudError(f"cannot connect: {exc.reason}", "connection")) from None
        except (ConnectionError, OSError) as exc:  # reset while reading, refused, ...
            raise _Failed(CloudError(f"connection failed: {exc}", "connection")) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Failed(CloudError(f"not JSON: {raw[:100]!r}", "response")) from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """An OpenAI-style error's message, else the body's start, else the reason."""
    try:
        body = exc.read()
    except OSError:
        body = b""
    try:
        message = json.loads(body)["error"]["message"]
        return str(message)[:MAX_ERROR_TEXT]
    except (ValueError, KeyError, TypeError):
        return body[:MAX_ERROR_TEXT].decode(errors="replace").strip() or str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _parse(reply: Any) -> dict[str, Any]:
    try:
        choice = reply["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise CloudError(f"no choices[0].message.content in the reply: {str(reply)[:MAX_ERROR_TEXT]}", "response") from None
    usage = reply.get("usage") or {}
    return {
        "text": text if isinstance(text, str) else "",
        "model": str(reply.get("model") or ""),
        "finish_reason": str(choice.get("finish_reason") or ""),
        "usage": {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                  if isinstance(usage.get(k), int)},  # fmt: skip
    }
