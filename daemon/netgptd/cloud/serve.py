"""``netgptd serve-llm``: a local Hugging Face causal LM behind an OpenAI-compatible API, for a lab or a test.

Routes: ``POST /v1/chat/completions`` (non-streaming), ``GET /v1/models``,
``GET /v1/models/ID`` and ``GET /health``. The chat messages are rendered
with the tokenizer's chat template when it has one, else as a plain
``role: content`` transcript ending in ``assistant:``. ``max_tokens`` (or
``max_completion_tokens``), ``temperature`` (0: greedy), ``top_p``, ``stop``
and ``seed`` are honoured; ``n`` must be 1 and ``stream`` false. A request
whose ``max_tokens`` would run past the model's context gets fewer
(``finish_reason: length``); one whose prompt alone does not fit is refused
(400, ``context_length_exceeded``). Errors are OpenAI-style JSON
(``{"error": {"message", "type", "param", "code"}}``) with their status.

One request generates at a time (a lock; the HTTP server itself is
threaded, so ``/health`` and ``/v1/models`` answer meanwhile). There is no
authentication: it listens on 127.0.0.1 unless told otherwise. For
production serving, vLLM (``vllm serve MODEL``) offers the same API.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

import structlog

from netgptd.llm.runtime import LLMError, load_causal_lm

log = structlog.get_logger(__name__)

MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_TOKENS = 256
ROLES = ("system", "developer", "user", "assistant", "tool")
EXIT_OK, EXIT_USAGE = 0, 2


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type, param and code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop or length


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, str]]
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None


class ChatModel:
    """A tokenizer and a causal LM from a local folder, generating one request at a time."""

    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None = None, threads: int | None = None,
                 name: str = "") -> None:  # fmt: skip
        try:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise LLMError(f"serve-llm needs the train extra (pip install 'netgptd[train]'): {exc}") from None
        hf_logging.disable_progress_bar()
        self.model = load_causal_lm(model_dir, adapter_dir, threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise LLMError(f"{model_dir}: cannot load its tokenizer: {exc}") from None
        self.id = name or Path(model_dir).resolve().name
        config = self.model.config
        self.context_length = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)
                                  or getattr(self.tokenizer, "model_max_length", 0) or 2048)  # fmt: skip
        self.created = int(time.time())
        self.templated = bool(getattr(self.tokenizer, "chat_template", None))
        self._lock = threading.Lock()

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text: the chat template with the generation prompt, or a ``role: content`` transcript."""
        if self.templated:
            try:
                return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            except Exception as exc:  # noqa: BLE001 -- jinja's TemplateError and friends: the messages do not fit it
                raise RequestError(400, f"the model's chat template refuses these messages: {exc}", "messages") from None
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def complete(self, request: GenerationRequest) -> Completion:
        """Generate for one request; requests take turns (the tokenizer and the model are shared)."""
        with self._lock:
            return self._complete(request)

    def _complete(self, request: GenerationRequest) -> Completion:
        import torch

        prompt = self.render(request.messages)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not self.templated)
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = self.context_length - prompt_tokens
        if room < 1:
            raise RequestError(400, f"This model's maximum context length is {self.context_length} tokens. However, "
                                    f"your messages resulted in {prompt_tokens} tokens.", "messages",
                               "context_length_exceeded")  # fmt: skip
        max_new = min(request.max_tokens or DEFAULT_MAX_TOKENS, room)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
        options: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": pad, "eos_token_id": eos}
        if request.temperature > 0:
            options |= {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p, "top_k": 0}
        else:
            options |= {"do_sample": False}
        with torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = self.model.generate(**inputs, **options)
        generated = output[0, prompt_tokens:].tolist()
        ended = eos is not None and bool(generated) and generated[-1] == eos
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        finish = "stop" if ended or len(generated) < max_new else "length"
        for stop in request.stop:
            at = text.find(stop)
            if at >= 0:
                text, finish = text[:at], "stop"
        return Completion(text, prompt_tokens, len(generated), finish)

    def card(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "netgptd",
                "max_model_len": self.context_length}  # fmt: skip


def _content(message: Any, index: int) -> dict[str, str]:
    """One chat message as {role, content}; content parts (``[{"type": "text", "text": ...}]``) are joined."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise RequestError(400, f"{where}: must be an object", "messages")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise RequestError(400, f"{where}.role: must be one of {', '.join(ROLES)}, not {role!r}", "messages")
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
            raise RequestError(400, f"{where}.content: only text parts are supported", "messages")
        content = "".join(texts)  # type: ignore[arg-type]
    if content is None and role == "assistant":
        content = ""
    if not isinstance(content, str):
        raise RequestError(400, f"{where}.content: must be a string or a list of text parts", "messages")
    return {"role": role, "content": content}


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return default
    kind_ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not kind_ok or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise RequestError(400, f"{key}: must be {what} between {low:g} and {high:g}, not {value!r}", key)
    return value


def parse_chat_request(body: Any, model_id: str) -> GenerationRequest:
    """A chat-completions body checked and normalised (RequestError names what is wrong)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, "", model_id):
        raise RequestError(404, f"The model `{model}` does not exist (this server serves `{model_id}`).", "model",
                           "model_not_found")  # fmt: skip
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages: must be a non-empty list of {role, content} objects", "messages")
    if body.get("stream"):
        raise RequestError(400, "stream: streaming is not supported by netgptd serve-llm (use vLLM)", "stream")
    if _number(body, "n", 1, 1, 1, integer=True) != 1:  # pragma: no cover -- the range check refuses it
        raise RequestError(400, "n: only 1 is supported", "n")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, 0, 1, 1 << 20, integer=True) or None
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "stop: must be a string or a list of up to 4 non-empty strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, f"seed: must be an integer, not {seed!r}", "seed")
    return GenerationRequest(
        messages=[_content(m, i) for i, m in enumerate(messages)],
        max_tokens=max_tokens,
        temperature=float(_number(body, "temperature", 1.0, 0, 2)),
        top_p=max(float(_number(body, "top_p", 1.0, 0, 1)), 1e-6),  # 0: the likeliest token only
        stop=stops,
        seed=seed,
    )


class Handler(BaseHTTPRequestHandler):
    """OpenAI-style routes over ``self.server.chat_model``."""

    server_version = "netgptd-serve-llm"
    server: LLMServer

    # -- plumbing -------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def _error(self, error: RequestError) -> None:
        headers = {"Allow": error.allow} if isinstance(error, _NotAllowed) else None
        self._send(error.status, error.body(), headers)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- BaseHTTPRequestHandler's name
        pass  # each request is logged once, as a structlog event, in _handle

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        self._status, self._usage = 0, {}
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._route(method, path)
        except RequestError as error:
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # noqa: BLE001 -- a generation failure is the server's, said as such
            log.exception("serve_llm_failed", path=path)
            self._error(RequestError(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error"))
        log.info("serve_llm_request", method=method, path=path, status=self._status,
                 seconds=round(time.monotonic() - started, 3), **self._usage)  # fmt: skip

    def _route(self, method: str, path: str) -> None:
        model = self.server.chat_model
        routes = {"/v1/chat/completions": "POST", "/v1/models": "GET", f"/v1/models/{model.id}": "GET", "/health": "GET"}
        if path not in routes:
            raise RequestError(404, f"Invalid URL ({method} {self.path})", code="not_found")
        if method != routes[path]:
            raise _NotAllowed(routes[path], f"{method} is not allowed on {path} (use {routes[path]})")
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [model.card()]})
        elif path.startswith("/v1/models/"):
            self._send(200, model.card())
        else:
            self._chat(self._body())

    def _body(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        try:
            size = int(length)
        except ValueError:
            raise RequestError(400, f"bad Content-Length {length!r}") from None
        if size > MAX_BODY:
            self.close_connection = True
            raise RequestError(413, f"the request body is {size:,} bytes; at most {MAX_BODY:,} are accepted")
        raw = self.rfile.read(size)
        try:
            return json.loads(raw)
        except ValueError as exc:  # also bad UTF-8
            raise RequestError(400, f"We could not parse the JSON body of your request ({exc}).") from None

    def _chat(self, body: Any) -> None:
        model = self.server.chat_model
        request = parse_chat_request(body, model.id)
        result = model.complete(request)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}  # fmt: skip
        self._usage = usage
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": result.finish_reason, "logprobs": None}],
            "usage": usage,
        })  # fmt: skip

    def do_GET(self) -> None:  # noqa: N802 -- http.server's names
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")


class _NotAllowed(RequestError):
    def __init__(self, allow: str, message: str) -> None:
        super().__init__(405, message, code="method_not_allowed")
        self.allow = allow


class LLMServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chat_model: ChatModel, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.chat_model = chat_model
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, adapter: Path | None = None,
          threads: int | None = None, name: str = "") -> int:  # fmt: skip
    """Load the model, listen, print the URL (one line on stdout), serve until SIGTERM or SIGINT."""
    try:
        chat_model = ChatModel(model_dir, adapter, threads, name)
    except LLMError as exc:
        print(f"netgptd: error: serve-llm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server = LLMServer(chat_model, host, port)
    except OSError as exc:
        print(f"netgptd: error: serve-llm: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("serve_llm_exposed", host=host, detail="no authentication: anyone who reaches the port can use the model")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(EXIT_OK)

    previous = signal.signal(signal.SIGTERM, stop)
    template = "chat template" if chat_model.templated else "role: content transcript"
    print(f"netgptd serve-llm: {chat_model.id} on {server.url} (context {chat_model.context_length} tokens, "
          f"{template})", flush=True)  # fmt: skip
    log.info("serve_llm_listening", url=server.url, model=chat_model.id, context=chat_model.context_length)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return EXIT_OK


def cmd_serve_llm(args: argparse.Namespace) -> int:
    return serve(args.model_dir, args.host, args.port, args.adapter, args.threads, args.served_model_name)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def add_serve_llm_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``serve-llm`` subcommand, on the ``netgptd`` command's subparsers."""
    p = sub.add_parser("serve-llm", help="serve a local causal LM on an OpenAI-compatible /v1/chat/completions",
                       description="Serve a local Hugging Face causal-LM folder on an OpenAI-compatible API "
                                   "(/v1/chat/completions, /v1/models) for a lab or a test; nothing is downloaded. "
                                   "No authentication: keep it on 127.0.0.1. In production, use vLLM (same API).")  # fmt: skip
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                   help="a Hugging Face model folder (config.json, weights, tokenizer)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port, printed)")
    p.add_argument("--adapter", type=Path, metavar="DIR", help="a LoRA adapter folder to apply")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--served-model-name", default="", metavar="NAME",
                   help="the model id in the API (default: the folder's name)")  # fmt: skip
    p.set_defaults(func=cmd_serve_llm)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m netgptd.cloud.serve MODEL_DIR ...`` (the same as ``netgptd serve-llm``)."""
    from netgptd import logs

    command = add_serve_llm_parser(argparse.ArgumentParser().add_subparsers())
    command.prog = "python -m netgptd.cloud.serve"
    command.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                         help="structlog JSON events on stderr at this level and above (default warning)")  # fmt: skip
    args = command.parse_args(argv)
    logs.configure(sys.stderr, args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
