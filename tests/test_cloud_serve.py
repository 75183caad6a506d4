"""``netgptd serve-llm`` as a process with a tiny model, and the cloud client against it (and two stubs).

The model is made here: a GPT-2 of two small layers with random weights and
a byte-level BPE tokenizer trained in code on a few sentences, saved with
``save_pretrained``; nothing is downloaded. Its answers are noise; what is
checked is the API around them.

Two stub servers stand in where the real one cannot be made to fail on
demand: one that answers 503 (a loaded vLLM would; serve-llm never does) to
show the retries, and one that sleeps past the client's timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from netgptd.cloud.client import CloudClient, CloudError, api_key_from, endpoint
from netgptd.cloud.serve import add_serve_llm_parser, cmd_serve_llm, parse_chat_request, RequestError

pytestmark = pytest.mark.timeout(120)

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")  # fmt: skip
CONTEXT = 256


def tiny_model(folder: Path, chat_template: str | None = None, context: int = CONTEXT) -> Path:
    """A random-weight GPT-2 and a byte-level BPE tokenizer, both built offline, saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    backend.train_from_iterator(["the network has hosts, flows and alerts", "user: hello\nassistant: hi"] * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=context, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def token_count(folder: Path, text: str) -> int:
    from tokenizers import Tokenizer

    return len(Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids)


class Served:
    """``python -m netgptd.cloud.serve`` on a free port; ``url`` is its /v1 base."""

    def __init__(self, model: Path, log: Path, through_cli: bool = False) -> None:
        self.model = model
        self._log = open(log, "w")
        self.log = log
        options = [str(model), "--port", "0", "--threads", "1", "--served-model-name", "tiny"]
        if through_cli:  # as an operator starts it: the netgptd command
            command = [sys.executable, "-m", "netgptd", "--log-level", "info", "serve-llm", *options]
        else:
            command = [sys.executable, "-m", "netgptd.cloud.serve", *options, "--log-level", "info"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=os.environ | {"TOKENIZERS_PARALLELISM": "false"},
        )  # fmt: skip
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 90)
        line = self.process.stdout.readline() if ready else ""
        if "on http://" not in line:
            self.stop()
            raise AssertionError(f"serve-llm did not start: {line!r}\n{log.read_text()}")
        self.banner = line.strip()
        self.url = line.split(" on ", 1)[1].split()[0]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    server = Served(tiny_model(folder / "tiny-gpt2", CHAT_TEMPLATE), folder / "serve.log")
    yield server
    assert server.stop() == 0, "SIGTERM ends serve-llm cleanly"
    assert "Traceback" not in server.log.read_text()


def call(url: str, body: Any = None, method: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat_body(text: str = "How many hosts are on the network?", **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
            "max_tokens": 6, "temperature": 0, **extra}  # fmt: skip


# --- the server -----------------------------------------------------------------


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
def test_clients_that_close_early_do_not_kill_the_server(tmp_path: Path) -> None:
    """A client that sends a request and closes without reading the answer (a timed-out call) makes
    the server write to a closed socket: SIGPIPE, whose default would end the process silently."""
    server = Served(tiny_model(tmp_path / "tiny-gpt2"), tmp_path / "serve.log", through_cli=True)
    try:
        host, port = server.url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        for _ in range(50):
            with socket.create_connection((host, int(port)), timeout=5) as client:
                client.sendall(b"GET /v1/models HTTP/1.1\r\nHost: netgptd\r\n\r\n")
            time.sleep(0.01)
        assert call(f"{server.url}/models")[0] == 200
        assert server.process.poll() is None, f"serve-llm died (status {server.process.returncode})"
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
def test_chat_completion_with_the_chat_template_and_usage(served: Served) -> None:
    status, reply = call(served.url + "/chat/completions", chat_body())
    assert status == 200, reply
    assert reply["object"] == "chat.completion" and reply["model"] == "tiny" and reply["id"].startswith("chatcmpl-")
    (choice,) = reply["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    rendered = "<|system|>Be brief.\n<|user|>How many hosts are on the network?\n<|assistant|>"
    usage = reply["usage"]
    assert usage["prompt_tokens"] == token_count(served.model, rendered), "the prompt is the chat template's rendering"
    assert 1 <= usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = call(served.url + "/chat/completions", chat_body())[1]
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"], "temperature 0 is greedy"
    if choice["message"]["content"]:
        stopped = call(served.url + "/chat/completions", chat_body(stop=[choice["message"]["content"][0]]))[1]
        assert (stopped["choices"][0]["message"]["content"], stopped["choices"][0]["finish_reason"]) == ("", "stop")
    sampled = call(served.url + "/chat/completions", chat_body(temperature=1.0, seed=7, max_tokens=3))[1]
    assert sampled["usage"]["completion_tokens"] <= 3


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
def test_models_and_health(served: Served) -> None:
    assert served.banner.startswith("netgptd serve-llm: tiny on http://127.0.0.1:") and "chat template" in served.banner
    status, models = call(served.url + "/models")
    assert status == 200 and models["object"] == "list"
    assert [(m["id"], m["object"], m["max_model_len"]) for m in models["data"]] == [("tiny", "model", CONTEXT)]
    assert call(served.url + "/models/tiny")[0] == 200
    root = served.url.removesuffix("/v1")
    assert call(root + "/health") == (200, {"status": "ok"})


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
@pytest.mark.parametrize(
    ("path", "method", "body", "status", "param", "code"),
    [
        ("/chat/completions", "POST", b"{not json", 400, None, None),
        ("/chat/completions", "POST", b"[1, 2]", 400, None, None),
        ("/chat/completions", "POST", {"messages": []}, 400, "messages", None),
        ("/chat/completions", "POST", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages", None),
        ("/chat/completions", "POST", chat_body(stream=True), 400, "stream", None),
        ("/chat/completions", "POST", chat_body(temperature=5), 400, "temperature", None),
        ("/chat/completions", "POST", chat_body(max_tokens=0), 400, "max_tokens", None),
        ("/chat/completions", "POST", chat_body(model="gpt-4o"), 404, "model", "model_not_found"),
        ("/chat/completions", "POST", chat_body("x " * 400), 400, "messages", "context_length_exceeded"),
        ("/chat/completions", "GET", None, 405, None, "method_not_allowed"),
        ("/completions", "POST", chat_body(), 404, None, "not_found"),
        ("/nowhere", "GET", None, 404, None, "not_found"),
    ],
)
def test_errors_are_openai_style_with_their_status(served: Served, path: str, method: str, body: Any, status: int,
                                                  param: str | None, code: str | None) -> None:  # fmt: skip
    raw = body if isinstance(body, bytes) else None
    got, reply = call(served.url + path, None if raw else body, method, raw)
    assert got == status, reply
    error = reply["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)


def test_request_parsing_normalises_what_clients_send() -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                  {"type": "text", "text": "b"}]}], "max_completion_tokens": 9, "stop": "\n",
                                  "top_p": 0, "logit_bias": {}}, "tiny")  # fmt: skip
    assert request.messages == [{"role": "user", "content": "ab"}]
    assert (request.max_tokens, request.stop, request.temperature) == (9, ["\n"], 1.0)
    with pytest.raises(RequestError, match="seed"):
        parse_chat_request({"messages": [{"role": "user", "content": "a"}], "seed": "1"}, "tiny")


def test_the_cli_parser_and_a_missing_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="netgptd")
    add_serve_llm_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve-llm", str(tmp_path / "missing"), "--port", "0", "--adapter", str(tmp_path)])
    assert (args.func, args.host, args.port, args.adapter) == (cmd_serve_llm, "127.0.0.1", 0, tmp_path)
    assert cmd_serve_llm(args) == 2
    assert "not a model folder (no config.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["serve-llm", "x", "--port", "70000"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecations inside peft
def test_a_lora_adapter_is_applied_and_the_transcript_used_without_a_template(tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from netgptd.cloud.serve import ChatModel, GenerationRequest
    from netgptd.llm.runtime import LLMError

    folder = tiny_model(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    get_peft_model(base, LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True)).save_pretrained(tmp_path / "lora")
    chat = ChatModel(folder, tmp_path / "lora", threads=1)
    assert isinstance(chat.model, PeftModel) and (chat.id, chat.templated) == ("base", False)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert chat.render(messages) == "system: Be brief.\nuser: hi\nassistant:"
    result = chat.complete(GenerationRequest(messages, max_tokens=3, temperature=0, top_p=1, stop=[], seed=None))
    assert result.prompt_tokens == token_count(folder, "system: Be brief.\nuser: hi\nassistant:")
    assert result.completion_tokens <= 3
    with pytest.raises(LLMError, match="not a LoRA adapter folder"):
        ChatModel(folder, tmp_path)


# --- the client against it --------------------------------------------------------


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
def test_client_gets_an_answer_and_its_usage(served: Served) -> None:
    client = CloudClient(served.url, model="tiny", max_tokens=5, temperature=0)
    result = client.chat([{"role": "user", "content": "status of HOST-1?"}])
    assert (result.model, result.attempts) == ("tiny", 1)
    assert set(result.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert 0 < result.latency_s < 30
    assert client.status() == {"requests": 1, "attempts": 1, "answers": 1}


@pytest.mark.slow  # serve-llm's start (torch, transformers) takes seconds
def test_client_does_not_retry_a_4xx(served: Served) -> None:
    slept: list[float] = []
    client = CloudClient(served.url, model="not-served", retries=3, sleep=slept.append)
    with pytest.raises(CloudError, match="HTTP 404: The model `not-served` does not exist") as failed:
        client.chat([{"role": "user", "content": "hi"}])
    assert (failed.value.kind, failed.value.status, failed.value.retryable) == ("http", 404, False)
    assert slept == [] and client.status()["attempts"] == 1


def test_client_retries_connection_errors_with_backoff(free_port: int) -> None:
    slept: list[float] = []
    client = CloudClient(f"http://127.0.0.1:{free_port}/v1", retries=2, backoff_initial=0.1, backoff_max=0.15,
                         sleep=slept.append)  # fmt: skip
    with pytest.raises(CloudError, match="cannot connect") as failed:
        client.chat([{"role": "user", "content": "hi"}])
    assert failed.value.kind == "connection"
    assert len(slept) == 2 and 0.05 <= slept[0] <= 0.1 and 0.075 <= slept[1] <= 0.15, "jittered, doubling, capped"
    assert client.status() == {"requests": 1, "attempts": 3, "errors_connection": 3, "retries": 2, "failures": 1}


class Stub(BaseHTTPRequestHandler):
    """Answers from the server's ``script`` (status or 'sleep'), one per request; records the headers."""

    server: Any

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(dict(self.headers))
        step = self.server.script.pop(0) if self.server.script else 200
        if step == "sleep":
            time.sleep(1.5)
            step = 200
        body = (json.dumps({"model": "stub", "choices": [{"message": {"role": "assistant", "content": "ok HOST-1"},
                                                          "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}})
                if step == 200 else json.dumps({"error": {"message": "overloaded", "type": "server_error"}}))  # fmt: skip
        data = body.encode()
        self.send_response(step)
        if step == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.daemon_threads = True
    server.script, server.seen = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def free_port() -> int:
    from broker import free_port as pick

    return pick()


def stub_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_client_retries_503_then_answers_with_the_api_key(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # serve-llm cannot be made to answer 503; a loaded provider does, so a stub plays it.
    stub.script[:] = [503, 503, 200]
    monkeypatch.setenv("NETGPT_TEST_KEY", "sk-test-123")
    slept: list[float] = []
    client = CloudClient(stub_url(stub), model="m", api_key=api_key_from(api_key_env="NETGPT_TEST_KEY"),
                         retries=2, backoff_initial=0.01, backoff_max=0.02, sleep=slept.append)  # fmt: skip
    result = client.chat([{"role": "user", "content": "hi"}])
    assert (result.text, result.model, result.attempts, result.usage) == ("ok HOST-1", "stub", 3, {"prompt_tokens": 3})
    assert len(slept) == 2 and client.status()["errors_http"] == 2
    assert {h["Authorization"] for h in stub.seen} == {"Bearer sk-test-123"}
    assert "sk-test" not in repr(client), "the key stays out of reprs (and logs)"


def test_client_gives_up_on_503_after_its_retries(stub: Any) -> None:
    stub.script[:] = [503, 503, 503]
    client = CloudClient(stub_url(stub), retries=1, backoff_initial=0.01, backoff_max=0.01)
    with pytest.raises(CloudError, match="HTTP 503: overloaded"):
        client.chat([{"role": "user", "content": "hi"}])
    assert client.status()["attempts"] == 2 and len(stub.seen) == 2


def test_client_times_out_and_counts_it(stub: Any) -> None:
    stub.script[:] = ["sleep", "sleep"]
    client = CloudClient(stub_url(stub), timeout=0.3, retries=1, backoff_initial=0.01, backoff_max=0.01)
    started = time.monotonic()
    with pytest.raises(CloudError, match=r"no answer within 0.3 s") as failed:
        client.chat([{"role": "user", "content": "hi"}])
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 1.4, "each attempt gave up at its timeout"
    assert client.status()["errors_timeout"] == 2 and client.status()["failures"] == 1


def test_endpoint_and_api_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert endpoint("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert endpoint("https://api.example.com/v1/") == "https://api.example.com/v1/chat/completions"
    assert endpoint("http://h/openai/v1/chat/completions") == "http://h/openai/v1/chat/completions"
    with pytest.raises(ValueError, match="^cloud_url"):
        endpoint("ftp://h")
    key = tmp_path / "key"
    key.write_text("sk-file\n")
    assert api_key_from(api_key_file=str(key)) == "sk-file"
    monkeypatch.delenv("NETGPT_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="^api_key_env: the environment variable NETGPT_NO_SUCH_KEY"):
        api_key_from(api_key_env="NETGPT_NO_SUCH_KEY")
    with pytest.raises(ValueError, match="^api_key_file"):
        api_key_from(api_key_file=str(tmp_path / "missing"))
