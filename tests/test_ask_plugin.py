"""The ask plugin: questions on ``<prefix>ask`` through a real Mosquitto, answered by serve-llm as the cloud.

serve-llm runs in this process (its server in a thread) with a tiny
random-weight model whose context holds the completed prompt; its answers are
noise, what is checked is the way there and back: the id, the prompt as sent
(completed, addresses replaced), the model, usage, the EVE copy.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.publish as paho_publish
import pytest
from broker import Mosquitto, Received, Subscriber, free_port, mosquitto, until  # noqa: F401 -- the fixture
from test_cloud_serve import tiny_model

from netgptd.cloud.serve import ChatModel, LLMServer
from netgptd.eve import stats_event
from netgptd.intent import validate
from netgptd.plugin_host import PluginError, PluginHost, SensorContext, check_settings, hookimpl
from netgptd.cloud.requests import Malformed, Request, parse_request, text_problem
from netgptd.cloud.signing import sign
from netgptd_plugins.ask import AskPlugin

pytestmark = pytest.mark.timeout(60)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "close_timeout": 2.0}
ADDRESSES = ("10.0.0.5", "10.0.0.66", "192.0.2.10")
KEY = "0123456789abcdef0123456789abcdef-ops"  # the operator "ops"'s key, as its key file holds it


def requesters(tmp_path: Path, key: str = KEY) -> dict[str, str]:
    """``requesters`` for the ask plugin: the operator "ops" with a key file."""
    path = tmp_path / "ops.key"
    path.write_text(key + "\n")
    return {"ops": str(path)}


def signed(body: dict[str, Any], requester: str = "ops", key: str = KEY, now: float | None = None) -> bytes:
    """A request signed as ``netgptd ask`` signs it."""
    return json.dumps(sign(body, requester, key.encode(), time.time() if now is None else now)).encode()


class Eve:
    """Stands in for the EVE file: keeps every event it is handed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def answers(self) -> list[dict[str, Any]]:
        return [e["answer"] for e in self.events if e["event_type"] == "answer"]


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    """serve-llm in a thread: a model without a chat template (the role: content transcript)."""
    folder = tiny_model(tmp_path_factory.mktemp("ask") / "tiny", context=4096)
    server = LLMServer(ChatModel(folder, threads=1, name="tiny"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def sensor_events() -> list[dict[str, Any]]:
    flow = {"timestamp": "2024-05-07T14:00:00.000000+0000", "event_type": "flow", "src_ip": "10.0.0.5",
            "src_port": 50000, "dest_ip": "192.0.2.10", "dest_port": 443, "proto": "TCP", "app_proto": "tls",
            "flow": {"bytes_toserver": 600, "bytes_toclient": 4000, "reason": "shutdown"},
            "netgpt": {"app": "TLS"}}  # fmt: skip
    alert = {"timestamp": "2024-05-07T14:01:00.000000+0000", "event_type": "alert", "src_ip": "10.0.0.66",
             "src_port": 40000, "dest_ip": "10.0.0.5", "dest_port": 22, "proto": "TCP",
             "alert": {"signature": "SSH brute force", "category": "brute-force", "severity": 2},
             "netgpt": {"detector": "bruteforce", "confidence": 1.0}}  # fmt: skip
    stats = stats_event(1_715_090_520 * 10**9, {"packets": 1000, "flows": 20, "active_flows": 7})  # 2024-05-07 14:02
    return [stats, *([flow] * 3), alert]


async def ask(broker: Mosquitto, topic: str, payload: bytes) -> None:
    await asyncio.to_thread(paho_publish.single, topic, payload, qos=1, hostname=broker.host, port=broker.port)


async def received(subscriber: Subscriber, done: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
    return await asyncio.to_thread(subscriber.wait_for, done, timeout)


async def with_mqtt_and_eve(broker: Mosquitto, plugin: AskPlugin, sensor: str, tmp_path: Path) -> tuple[PluginHost, Eve]:
    """A host with the mqtt plugin (answers go out through its outbox), ``plugin`` and an EVE stand-in,
    started on the sensor's events, once both connections are up."""
    host, eve = PluginHost({"mqtt": {"url": broker.url, **FAST}}), Eve()
    host.add(plugin, "ask")
    host.add(eve, "eve")
    await host.start(SensorContext(site="lab", sensor=sensor, state_dir=tmp_path, emit=host.emit))
    for event in sensor_events():
        host.emit(event)
    await until(lambda: plugin.connected and host.status()["mqtt"]["connected"] == 1, what="connected")
    return host, eve


def test_a_question_on_mqtt_is_answered_by_the_cloud_llm_with_its_id(mosquitto: Mosquitto, llm: LLMServer,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    prefix = "netgpt/lab/ask/"

    async def run() -> tuple[list[Received], Eve, dict[str, Any]]:
        plugin = AskPlugin(url=mosquitto.url, cloud_url=llm.url, model="tiny", max_tokens=8, temperature=0,
                           location="Lab 1", role="test bench", working_hours="Mon-Fri 08:00-18:00",
                           requesters=requesters(tmp_path), unsigned_questions=True, **FAST)  # fmt: skip
        host, eve = await with_mqtt_and_eve(mosquitto, plugin, "ask", tmp_path)
        with Subscriber(mosquitto, prefix + "answers") as subscriber:
            await ask(mosquitto, prefix + "ask", signed({"id": "q-1", "question": "Who attacks 10.0.0.5?"}))
            await ask(mosquitto, prefix + "ask", b"Anything unusual?")
            got = await received(subscriber, lambda m: len(m) >= 2)
            await until(lambda: len(eve.answers()) == 2, what="answers in EVE")
        status = host.status()["ask"]
        await host.aclose()
        return got, eve, status

    got, eve, status = asyncio.run(run())
    answers = {a["id"]: a for a in (json.loads(m.payload)["answer"] for m in got)}
    assert {m.qos for m in got} == {1}
    first = answers.pop("q-1")
    (other_id, other), = answers.items()
    uuid.UUID(other_id)  # plain text: a fresh id
    assert other["question"] == "Anything unusual?"
    assert first["question"] == "Who attacks HOST-2?", "the answer is redacted as the prompt is"
    assert (first["status"], first["model"]) == ("ok", "tiny")
    assert isinstance(first["text"], str) and first["latency_s"] > 0
    assert first["usage"]["prompt_tokens"] > 100 and first["usage"]["completion_tokens"] <= 8
    prompt = first["prompt"]
    # Placeholders in order of first appearance: the alert's source, then its victim (the question's host).
    assert "SSH brute force (severity 2, from bruteforce): HOST-1:40000 -> HOST-2:22/TCP" in prompt
    assert prompt.endswith("Operator question: Who attacks HOST-2?")
    assert "- location: Lab 1" in prompt and "- working hours: Mon-Fri 08:00-18:00" in prompt
    assert "- active flows now: 7" in prompt and "tls 3 flows / 13.8 kB" in prompt
    assert "[brute-force] SSH brute force" in prompt
    assert not any(address in prompt for address in ADDRESSES), "no address leaves the sensor"
    assert first["redacted"] == 2  # 10.0.0.5 and 10.0.0.66 (flows are counted, not listed)
    assert sorted(a["id"] for a in eve.answers()) == sorted(["q-1", other_id]), "the EVE stream has them too"
    assert status["answered"] == 2 and status["cloud_requests"] == 2 and status["cloud_failures"] == 0
    assert not any(address in json.dumps(first) for address in ADDRESSES), "no address in the answer either"


def test_without_a_cloud_it_answers_locally_on_its_own_connection(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prefix = "netgpt/lab/local/"

    async def run() -> tuple[list[Received], dict[str, Any]]:
        plugin = AskPlugin(url=mosquitto.url, publish_answers=True, unsigned_questions=True, redact_answers=False,
                           **FAST)  # no mqtt plugin here
        plugin.netgpt_start(SensorContext(site="lab", sensor="local", state_dir=tmp_path))
        for event in sensor_events():
            plugin.netgpt_event(event)
        await until(lambda: plugin.connected, what="connected")
        with Subscriber(mosquitto, prefix + "answers") as subscriber:
            await ask(mosquitto, prefix + "ask", b'{"id": "q-2", "question": "What runs here?"}')
            await ask(mosquitto, prefix + "ask", b'{"id": "q-3", "question": ""}')
            await ask(mosquitto, prefix + "ask", b"\xff\xfe not text")  # malformed: counted, not answered
            got = await received(subscriber, lambda m: len(m) >= 2)
            await until(lambda: plugin.netgpt_status()["published"] == 2, what="both acknowledged")
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    got, status = asyncio.run(run())
    answers = {a["id"]: a for a in (json.loads(m.payload)["answer"] for m in got)}
    local = answers["q-2"]
    assert (local["status"], local["model"]) == ("local", "none (edge template)")
    assert local["text"].startswith("No cloud LLM is configured")
    assert "Local summary: 7 active flows" in local["text"] and "10.0.0.66" in local["text"], "redact_answers = false"
    assert "Operator question: What runs here?" in local["text"]
    assert "10.0.0.5" not in local["prompt"], "the prompt field is what would be sent"
    assert answers["q-3"]["status"] == "rejected" and "no question" in answers["q-3"]["text"]
    assert (status["local"], status["refused"]["invalid"], status["published"]) == (1, 1, 2)
    assert status["malformed"]["not_utf8"] == 1 and status["received"] == 3 and status["accepted"] == 2


def test_answers_wait_for_the_broker_and_questions_come_after_a_reconnect(mosquitto: Mosquitto,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    prefix = "netgpt/lab/outage/"

    async def run() -> tuple[list[Received], dict[str, Any]]:
        plugin = AskPlugin(url=mosquitto.url, publish_answers=True, unsigned_questions=True, **FAST)
        plugin.netgpt_start(SensorContext(site="lab", sensor="outage", state_dir=tmp_path))
        await until(lambda: plugin.connected, what="connected")
        # A persistent subscriber: the broker (persistence on) queues for it across its restart.
        with Subscriber(mosquitto, prefix + "answers", client_id="outage-watcher") as subscriber:
            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: not plugin.connected, what="disconnected")
            await plugin.answer("q-held", "answered while the broker was away")  # held in memory
            await asyncio.to_thread(mosquitto.start)
            await until(lambda: plugin.connected, what="reconnected")
            await ask(mosquitto, prefix + "ask", b'{"id": "q-after", "question": "still there?"}')
            got = await received(subscriber, lambda m: {json.loads(x.payload)["answer"]["id"] for x in m}
                                 >= {"q-held", "q-after"})  # fmt: skip
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    got, status = asyncio.run(run())
    assert [json.loads(m.payload)["answer"]["id"] for m in got][:2] == ["q-held", "q-after"]
    assert status["reconnects"] == 1


def test_a_cloud_failure_is_an_error_answer_and_redaction_can_be_off(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    closed_broker = f"mqtt://127.0.0.1:{free_port()}"

    async def run() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        plugin = AskPlugin(url=closed_broker, cloud_url=nowhere, retries=0, redact=False, redact_answers=False, **FAST)
        emitted: list[dict[str, Any]] = []
        plugin.netgpt_start(SensorContext(site="lab", sensor="down", state_dir=tmp_path, emit=emitted.append))
        for event in sensor_events():
            plugin.netgpt_event(event)
        event = await plugin.answer("q-4", "Is 10.0.0.5 fine?")
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return event, status, emitted

    event, status, emitted = asyncio.run(run())
    answer = event["answer"]
    assert [e for e in emitted if e["event_type"] == "answer"] == [event] and event["event_type"] == "answer"
    assert not [e for e in emitted if e["event_type"] == "intent"], "a question publishes no intent"
    assert answer["status"] == "error" and "cannot connect" in answer["error"]
    assert answer["text"].startswith("The cloud LLM gave no answer") and "Local summary:" in answer["text"]
    assert "Operator question: Is 10.0.0.5 fine?" in answer["prompt"], "redact = false sends addresses as they are"
    assert (status["failed"], status["cloud_failures"], status["connected"]) == (1, 1, 0)


def test_requests_and_settings() -> None:
    question = parse_request(b'{"id": 7, "question": " why? "}')
    assert (question.id, question.text, question.kind, question.signed) == ("7", "why?", "question", False)
    intent = parse_request(b'{"id": "i", "intent": "block torrents", "confirm": true}')
    assert (intent.id, intent.text, intent.kind, intent.confirm) == ("i", "block torrents", "intent", True)
    assert parse_request(b"isolate 10.0.0.5").kind == "question", "plain text is a question: it publishes no intent"
    assert parse_request(b'"quoted question"').text == "quoted question"
    assert parse_request(signed({"id": "s", "question": "q"})).requester == "ops"
    assert text_problem(parse_request(b'{"id": "x", "question": ""}')).startswith("no question")
    assert "5,000 characters" in text_problem(Request("x", "x" * 5000))
    for payload, reason in [(b"\xff", "not_utf8"), (b"{not json", "not_json"), (b"x" * 20000, "too_large"),
                            (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
                            (b'{"id": [1], "question": 5}', "bad_fields"), (b'{"question": "q", "intent": "i"}', "bad_fields"),
                            (b'{"id": "x"}', "bad_fields"), (b'{"question": "q", "shell": "rm"}', "bad_fields"),
                            (b'{"question": "q", "confirm": "yes"}', "bad_fields"),
                            (b'{"question": "q", "sig": "00"}', "bad_fields"), (b'"unterminated', "not_json"),
                            (b'{"question": "q", "ts": NaN}', "not_json"),
                            (signed({"question": "q"}).replace(b'"sig": "', '"sig": "é'.encode())[:-3] + b'"}',
                             "bad_fields"),
                            (signed({"question": "q"}, now=1e300), "bad_fields")]:  # fmt: skip
        with pytest.raises(Malformed) as bad:
            parse_request(payload)
        assert bad.value.reason == reason, (payload[:40], bad.value.reason)
    with pytest.raises(PluginError, match=r"\[plugins.ask\] timeout: expected float"):
        check_settings("ask", AskPlugin, {"timeout": "30"})
    with pytest.raises(PluginError, match=r"\[plugins.ask\] redact: expected bool"):
        check_settings("ask", AskPlugin, {"redact": "no"})
    for settings, setting in [({"cloud_url": "ftp://x"}, "cloud_url"), ({"url": "http://x"}, "url"),
                              ({"api_key_env": "NETGPT_NO_SUCH_KEY_VAR"}, "api_key_env"),
                              ({"cloud_url": "http://x", "temperature": 3.0}, "temperature"),
                              ({"max_pending": 0}, "max_pending"), ({"topic_prefix": "a/#/"}, "topic_prefix"),
                              ({"requesters": {"ops": "/nonexistent/ops.key"}}, "requesters"),
                              ({"requesters": {"a b": "/x"}}, "requesters"), ({"protected": ["gateway"]}, "protected"),
                              ({"rate": 0.0}, "rate"), ({"burst": 0}, "burst")]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"^{setting}\b"):
            AskPlugin(**settings)


# -- operator intents ------------------------------------------------------------------


def test_an_intent_request_publishes_intents_a_question_only_reads_them(mosquitto: Mosquitto,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    prefix = "netgpt/lab/intents/"
    profile = tmp_path / "site.toml"
    profile.write_text('site = "lab"\n[subnets]\nguests = "10.0.9.0/24"\n')

    async def run() -> tuple[list[Received], Eve, dict[str, Any]]:
        plugin = AskPlugin(url=mosquitto.url, intent_profile=str(profile), requesters=requesters(tmp_path),
                           redact_answers=False, **FAST)  # fmt: skip
        host, eve = await with_mqtt_and_eve(mosquitto, plugin, "intents", tmp_path)
        with Subscriber(mosquitto, prefix + "#") as subscriber:
            await ask(mosquitto, prefix + "ask", signed({"id": "q-op", "intent": "block torrents for the guests and isolate 10.0.0.66"}))
            got = await received(subscriber, lambda m: any(r.topic == prefix + "answers" for r in m)
                                 and sum(r.topic == prefix + "intents" for r in m) >= 2)  # fmt: skip
            await ask(mosquitto, prefix + "ask", signed({"id": "q-ask", "question": "should I isolate 10.0.0.66?"}))
            await ask(mosquitto, prefix + "ask", signed({"id": "q-next", "question": "what did I ask for?"}))
            got = await received(subscriber, lambda m: sum(r.topic == prefix + "answers" for r in m) >= 3)
        status = host.status()["ask"]
        await host.aclose()
        return got, eve, status

    got, eve, status = asyncio.run(run())
    answers = {a["id"]: a for a in (json.loads(m.payload)["answer"] for m in got if m.topic == prefix + "answers")}
    intents = [json.loads(m.payload) for m in got if m.topic == prefix + "intents"]
    answer = answers["q-op"]
    assert answer["status"] == "intents" and len(answer["intents"]) == 2 and answer["prompt"] == ""
    by_action = {i["action"]: i for i in answer["intents"]}
    assert by_action["block"]["target"] == {"application": ["BitTorrent"], "subnet": ["10.0.9.0/24"], "site": "lab"}
    assert by_action["isolate"]["target"] == {"host": ["10.0.0.66"], "site": "lab"}
    for intent in answer["intents"]:
        validate(intent)
        assert intent["source"] == "operator"
    # Each went out as an intent event with the question's id, at QoS 1, before the answer; the EVE has them too.
    mine = [e for e in intents if e["netgpt"]["request_id"] == "q-op"]
    assert [e["intent"] for e in mine] == answer["intents"] and {e["event_type"] for e in mine} == {"intent"}
    assert all(m.qos == 1 for m in got if m.topic == prefix + "intents")
    assert [e for e in eve.events if e["event_type"] == "intent" and e["netgpt"]["request_id"] == "q-op"] == mine
    # A question publishes no intent: what the edge read in it is in its answer and, redacted, in its prompt.
    asked = answers["q-ask"]
    assert not [e for e in intents if e["netgpt"]["request_id"] == "q-ask"] and asked["status"] == "local"
    prompt = asked["prompt"]
    if asked["intents"]:
        head, _, question = prompt.partition("Intents the edge model read in this question")
        scanner = re.search(r"isolate (HOST-\d+)\?$", question)
        assert scanner and f'"host":["{scanner[1]}"]' in question, question
    assert "10.0.0.66" not in prompt, "no address leaves the sensor, in intents neither"
    # The next question's prompt lists them among the intents the edge inferred (the sensor's state).
    assert "Intents inferred by the edge model" in answers["q-next"]["prompt"]
    assert status["intents"] >= 2 and status["intent_errors"] == 0


def test_intents_off_or_without_a_model_and_on_the_own_connection(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prefix = "netgpt/lab/own/"

    async def run() -> tuple[list[Received], list[dict[str, Any]], dict[str, Any]]:
        plugin = AskPlugin(url=mosquitto.url, publish_answers=True, requesters=requesters(tmp_path),
                           **FAST)  # no mqtt plugin: its own connection
        off = AskPlugin(url=f"mqtt://127.0.0.1:{free_port()}", intents=False, **FAST)
        emitted: list[dict[str, Any]] = []
        plugin.netgpt_start(SensorContext(site="lab", sensor="own", state_dir=tmp_path))
        off.netgpt_start(SensorContext(site="lab", sensor="off", state_dir=tmp_path, emit=emitted.append))
        await until(lambda: plugin.connected, what="connected")
        with Subscriber(mosquitto, prefix + "#") as subscriber:
            await ask(mosquitto, prefix + "ask", signed({"id": "q-own", "intent": "isolate 10.0.0.66"}))
            got = await received(subscriber, lambda m: {r.topic for r in m} >= {prefix + "answers", prefix + "intents"})
            await until(lambda: plugin.netgpt_status()["published"] == 1, what="acknowledged")
        await off.answer("q-off", "isolate 10.0.0.66", "intent")
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        await off.netgpt_close()
        return got, emitted, status

    got, emitted, status = asyncio.run(run())
    (intent_event,) = [json.loads(m.payload) for m in got if m.topic == prefix + "intents"]
    assert intent_event["netgpt"]["request_id"] == "q-own" and intent_event["intent"]["action"] == "isolate"
    assert status["published"] == 1 and status["published_intents"] == 1
    (answer,) = [e["answer"] for e in emitted]
    assert answer["intents"] == [] and answer["status"] == "error", "intents = false: none, and it says so"


def test_intent_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"\[plugins.ask\] intents: expected bool"):
        check_settings("ask", AskPlugin, {"intents": "yes"})
    bad = tmp_path / "bad.toml"
    bad.write_text('site = "lab"\n[subnets]\nlab = "10.1.2.0/33"\n')
    for settings, setting in [({"intent_profile": str(bad)}, "intent_profile"),
                              ({"intent_profile": str(tmp_path / "none.toml")}, "intent_profile"),
                              ({"intent_model_dir": str(tmp_path)}, "intent_model_dir")]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"^{setting}\b"):
            AskPlugin(**settings)
    with pytest.raises(PluginError, match=r"\[plugins.ask\] intent_adapter_dir: unknown setting"):
        check_settings("ask", AskPlugin, {"intent_adapter_dir": str(tmp_path)})
