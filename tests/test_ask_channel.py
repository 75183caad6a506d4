"""The ask control channel: who may ask (signatures, the broker's ACL), how often, what it may not do.

Every test talks to a real Mosquitto; requests are signed as ``netgptd ask``
signs them (:func:`netgptd.cloud.signing.sign`). No cloud: answers are the
sensor's local ones, which is all these tests need.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import re
import threading

import paho.mqtt.publish as paho_publish
import pytest
from broker import Mosquitto, Received, Subscriber, mosquitto, passwords, until  # noqa: F401 -- the fixture
from paho.mqtt import MQTTException
from test_ask_plugin import FAST, KEY, ask, received, requesters, sensor_events, signed

from netgptd.cloud.guard import Protected, dangers, gateways_v4, gateways_v6, local_v4, local_v6, sentence_dangers
from netgptd.cloud.admission import TokenBucket
from netgptd.cli import main
from netgptd.cloud.signing import Verifier, canonical, sign
from netgptd.plugin_host import SensorContext
from netgptd_plugins.ask import AskPlugin

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parent.parent
ACL = REPO / "deploy" / "mosquitto" / "netgptd.acl"


async def started(plugin: AskPlugin, sensor: str, tmp_path: Path) -> AskPlugin:
    """``plugin`` started on the sensor's events (its own connection: publish_answers), once connected."""
    plugin.netgpt_start(SensorContext(site="lab", sensor=sensor, state_dir=tmp_path))
    for event in sensor_events():
        plugin.netgpt_event(event)
    await until(lambda: plugin.connected, what="connected")
    return plugin


def dashboard_client(log: str) -> str:
    """The client id the dashboard user connected as, from mosquitto's log."""
    match = re.search(r"New client connected from \S+ as (\S+) \(.*u'dashboard'\)", log)
    assert match, log
    return match[1]


def answers_of(got: list[Received], prefix: str) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in (json.loads(m.payload)["answer"] for m in got if m.topic == prefix + "answers")}


# -- who may ask -------------------------------------------------------------------------------


def test_only_requests_signed_by_a_configured_requester_are_answered(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prefix = "netgpt/lab/auth/"
    other_key = "fedcba9876543210fedcba9876543210-other"
    replayed = signed({"id": "ok-1", "question": "what runs here?"})
    tampered = json.loads(signed({"id": "tampered", "question": "what runs here?"}))
    tampered["question"] = "isolate everything"
    attempts = [
        replayed,
        b'{"id": "unsigned-json", "question": "what runs here?"}',  # unsigned (unsigned_questions is off)
        b"plain text is unsigned too",
        signed({"id": "wrong-key", "question": "q"}, key=other_key),  # ops's name, another key
        signed({"id": "stranger", "question": "q"}, requester="mallory", key=other_key),
        json.dumps(tampered).encode(),
        replayed,  # the same message again
        signed({"id": "stale", "question": "q"}, now=time.time() - 3600),
        signed({"id": "intent-unsigned", "intent": "block torrents"})[:-1].replace(b'"sig"', b'"sig_"') + b"}",
        signed({"id": "ok-2", "question": "and now?"}),
    ]

    async def run() -> tuple[list[Received], dict[str, Any]]:
        plugin = await started(AskPlugin(url=mosquitto.url, publish_answers=True, intents=False,
                                         requesters=requesters(tmp_path), **FAST), "auth", tmp_path)  # fmt: skip
        with Subscriber(mosquitto, prefix + "answers") as subscriber:
            for payload in attempts:
                await ask(mosquitto, prefix + "ask", payload)
            await until(lambda: plugin.netgpt_status()["received"] == len(attempts), what="all read")
            got = await received(subscriber, lambda m: len(m) >= 2)
            await asyncio.sleep(0.3)  # anything more would have come by now
            got = subscriber.wait_for(lambda m: True)
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    got, status = asyncio.run(run())
    assert sorted(answers_of(got, prefix)) == ["ok-1", "ok-2"], "only the two good requests are answered"
    assert status["refused"] == {"unsigned": 2, "unknown_requester": 1, "bad_signature": 2, "stale": 1, "replayed": 1,
                                 "invalid": 0, "dangerous": 0}  # fmt: skip
    assert status["malformed"]["bad_fields"] == 1, "an unknown field (sig_) makes it no request at all"
    assert (status["accepted"], status["received"], status["local"]) == (2, 10, 2)


def test_the_broker_acl_drops_a_strangers_publish_to_ask(tmp_path: Path) -> None:
    """The shipped ACL file, in a real mosquitto: only the operator's publish to .../ask reaches the sensor."""
    users = {"netgptd": "sensor-pw", "operator": "operator-pw", "dashboard": "dashboard-pw"}
    broker = Mosquitto(tmp_path / "mosquitto", "allow_anonymous false",
                       config=f"password_file {passwords(tmp_path, users)}\nacl_file {ACL}")  # fmt: skip
    broker.start()
    prefix = "netgpt/lab/acl/"

    def publish(user: str, payload: bytes) -> None:
        paho_publish.single(prefix + "ask", payload, qos=1, hostname=broker.host, port=broker.port,
                            auth={"username": user, "password": users[user]})  # fmt: skip

    async def run() -> tuple[list[Received], dict[str, Any]]:
        url = broker.url.replace("mqtt://", "mqtt://netgptd:sensor-pw@")
        plugin = await started(AskPlugin(url=url, publish_answers=True, intents=False, requesters=requesters(tmp_path),
                                         **FAST), "acl", tmp_path)  # fmt: skip
        with Subscriber(broker, prefix + "answers", username="operator", password="operator-pw") as operator:
            # The dashboard holds a validly signed request (say, copied): the broker drops it anyway.
            await asyncio.to_thread(publish, "dashboard", signed({"id": "from-dashboard", "question": "q"}))
            await asyncio.to_thread(publish, "operator", signed({"id": "from-operator", "question": "q"}))
            got = await received(operator, lambda m: len(m) >= 1)
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    try:
        got, status = asyncio.run(run())
        with pytest.raises(MQTTException, match="[Nn]ot authori[sz]ed"):
            paho_publish.single(prefix + "ask", b"anonymous", qos=1, hostname=broker.host, port=broker.port)
    finally:
        broker.stop()
    assert list(answers_of(got, prefix)) == ["from-operator"]
    assert status["received"] == 1, "the dashboard's publish never reached the sensor"
    assert f"Denied PUBLISH from {dashboard_client(broker.log_text())} " in broker.log_text()


# -- how often -------------------------------------------------------------------------------


def test_a_burst_of_10000_requests_gets_only_what_the_rate_allows(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", config="max_queued_messages 0")  # the broker drops none of them
    broker.start()
    prefix = "netgpt/lab/flood/"
    rate, burst, total = 5.0, 5, 10_000
    now = time.time()
    flood = [{"topic": prefix + "ask", "payload": signed({"id": f"f-{i}", "question": "what runs here?"}, now=now)}
             for i in range(total)]  # fmt: skip

    async def run() -> tuple[list[Received], dict[str, Any], float, int]:
        plugin = await started(AskPlugin(url=broker.url, publish_answers=True, intents=False, rate=rate, burst=burst,
                                         requesters=requesters(tmp_path), **FAST), "flood", tmp_path)  # fmt: skip
        with Subscriber(broker, prefix + "answers") as subscriber:
            begin = time.monotonic()
            await asyncio.to_thread(paho_publish.multiple, flood, hostname=broker.host, port=broker.port)
            read = lambda: plugin.netgpt_status()["received"] + plugin.dropped["queue_full"]  # noqa: E731
            await until(lambda: read() == total, timeout=60, what="every message read or dropped")
            elapsed = time.monotonic() - begin
            await until(lambda: plugin.netgpt_status()["published"] == plugin.counts["accepted"], what="answered")
            await asyncio.sleep(0.3)
            got = subscriber.wait_for(lambda m: True)
        remembered = plugin.admission.verifier.remembered()
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status, elapsed, remembered

    try:
        got, status, elapsed, remembered = asyncio.run(run())
    finally:
        broker.stop()
    allowed = burst + rate * elapsed
    accepted = status["accepted"]
    assert burst <= accepted <= allowed, (accepted, elapsed)
    assert len(answers_of(got, prefix)) == status["published"] == accepted, "one answer per accepted request"
    dropped = status["dropped"]["queue_full"] + status["dropped"]["busy"]
    assert accepted + status["rate_limited"] + dropped == total, status
    assert status["rate_limited"] > 0 and status["dropped"]["error"] == 0
    assert remembered <= accepted + status["dropped"]["busy"], "nonces kept only for what the bucket let through"
    print(f"10,000 signed requests read in {elapsed:.2f} s: {accepted} accepted (at most {allowed:.0f} allowed), "
          f"{status['rate_limited']} rate limited, {dropped} dropped (queue {status['dropped']['queue_full']})")


def test_token_bucket_and_replay_window() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.5) and not bucket.take(100.5), "one token back after half a second at 2/s"
    assert not bucket.take(90.0), "a clock that steps back gives nothing"
    key = KEY.encode()
    verifier = Verifier({"ops": key}, window_s=60)
    request = sign({"id": "r", "question": "q"}, "ops", key, 1000.0)
    assert verifier.check(request, 1000.0) == "" and verifier.check(request, 1059.0) == ""
    assert verifier.check(request, 1061.0) == "stale" and verifier.check(request, 939.0) == "stale"
    verifier.remember(request, 1000.0)
    assert verifier.check(request, 1010.0) == "replayed"
    later = sign({"id": "r2", "question": "q"}, "ops", key, 1100.0)
    verifier.remember(later, 1100.0)
    assert verifier.remembered() == 1, "a nonce is forgotten once its request is out of the window"
    assert canonical({"b": 1, "a": "é", "sig": "x"}) == '{"a":"é","b":1}'.encode()


# -- what it may not do ------------------------------------------------------------------------


def test_intents_that_cut_the_site_off_need_a_confirmation(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prefix = "netgpt/lab/guard/"
    requests = [
        {"id": "d-site", "intent": "isolate the whole network"},  # refused on its words too
        {"id": "d-all", "intent": "block everyone"},  # all traffic of the whole site
        {"id": "d-gateway", "intent": "isolate 10.0.0.1"},
        {"id": "d-gateway-2", "intent": "quarantine 10.0.0.1 right now"},
        {"id": "d-any", "intent": "isolate 0.0.0.0/0"},  # refused on its words, before the model reads it
        {"id": "c-gateway", "intent": "isolate 10.0.0.1", "confirm": True},
        {"id": "ok-host", "intent": "isolate 10.0.0.66"},
        {"id": "q-gateway", "question": "should I isolate 10.0.0.1?", "confirm": True},
        {"id": "q-any", "question": "isolate 0.0.0.0/0"},
    ]

    async def run() -> tuple[list[Received], dict[str, Any]]:
        plugin = await started(AskPlugin(url=mosquitto.url, publish_answers=True, requesters=requesters(tmp_path),
                                         protected=["10.0.0.1"], discover_protected=False, burst=10, **FAST),
                               "guard", tmp_path)  # fmt: skip
        with Subscriber(mosquitto, prefix + "#") as subscriber:
            for request in requests:
                await ask(mosquitto, prefix + "ask", signed(request))
            got = await received(subscriber, lambda m: len(answers_of(m, prefix)) == len(requests), timeout=60)
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    got, status = asyncio.run(run())
    answers = answers_of(got, prefix)
    intents = [json.loads(m.payload) for m in got if m.topic == prefix + "intents"]
    for refused in ("d-any", "d-site", "d-all", "d-gateway", "d-gateway-2"):
        answer = answers[refused]
        assert (answer["status"], answer["reason"]) == ("rejected", "dangerous"), answer
        assert '"confirm": true' in answer["text"]
    assert "every address" in answers["d-any"]["text"] and "whole site" in answers["d-site"]["text"]
    assert "all traffic of the whole site" in answers["d-all"]["text"]
    assert "protected address HOST-1" in answers["d-gateway"]["text"], "the reason, redacted as answers are"
    assert [i["action"] for i in answers["d-all"]["intents"]] == ["block"], "what would have been published"
    assert {e["netgpt"]["request_id"] for e in intents} == {"c-gateway", "ok-host"}, "only the confirmed and the harmless one"
    (confirmed,) = [e["intent"] for e in intents if e["netgpt"]["request_id"] == "c-gateway"]
    assert confirmed["target"]["host"] == ["10.0.0.1"], "the intent itself carries the real address"
    for question in ("q-gateway", "q-any"):
        assert answers[question]["status"] == "local"
        assert not any(dangers(i, Protected.of(["10.0.0.1"])) or not i["target"].get("host")
                       for i in answers[question].get("intents", [])), "a question yields no dangerous intent"  # fmt: skip
    assert status["refused"]["dangerous"] == 5 and status["accepted"] == len(requests)
    assert "10.0.0.1" not in json.dumps(answers), "answers are redacted"


def test_what_counts_as_cutting_the_site_off() -> None:
    protected = Protected.of(["10.0.0.1", "fd00::/64"], [("the sensor's own address", "192.0.2.2")])
    isolate = lambda **target: {"action": "isolate", "target": {**target, "site": "lab"}}  # noqa: E731
    assert dangers(isolate(subnet=["0.0.0.0/0"]), protected) == ["isolate 0.0.0.0/0 is every address"]
    assert dangers(isolate(subnet=["::/0"]), protected) == ["isolate ::/0 is every address"]
    assert dangers(isolate(host=["10.0.0.1"]), protected) == ["isolate 10.0.0.1 reaches the protected address 10.0.0.1"]
    assert dangers(isolate(subnet=["192.0.2.0/24"]), protected) == [
        "isolate 192.0.2.0/24 reaches the sensor's own address 192.0.2.2"]
    assert dangers(isolate(host=["fd00::5"]), protected)
    assert dangers(isolate(application=["NetBIOS"]), protected) == ["isolate applies to the whole site lab"]
    assert dangers({"action": "block", "target": {"site": "lab"}}, protected)
    assert not dangers({"action": "block", "target": {"application": ["BitTorrent"], "site": "lab"}}, protected)
    assert not dangers(isolate(host=["10.0.0.66"]), protected)
    assert not dangers({"action": "notify", "target": {"subnet": ["0.0.0.0/0"], "site": "lab"}}, protected)
    assert sentence_dangers("isolate 0.0.0.0/0 at 12:30:45", protected) == ["0.0.0.0/0 is every address"]
    assert sentence_dangers("block the whole site", protected) == ["'whole site' names the whole site"]
    assert not sentence_dangers("block torrents for 10.0.0.66 after 18:00", protected)
    route = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
             "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
             "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")  # fmt: skip
    assert gateways_v4(route) == ["192.0.2.1"]
    ipv6_route = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                  "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n")  # fmt: skip
    assert gateways_v6(ipv6_route) == ["fd00::1"]
    assert local_v6("fd000000000000000000000000000002 04 40 00 82     eth0\n") == ["fd00::2"]
    fib_trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.255\n" \
               "        /32 link BROADCAST\n"  # fmt: skip
    assert local_v4(fib_trie) == ["192.0.2.2"]


# -- malformed messages ------------------------------------------------------------------------


def test_malformed_messages_are_counted_and_the_next_request_is_answered(mosquitto: Mosquitto,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    prefix = "netgpt/lab/junk/"
    junk = [
        b'{"id": "deep", "question": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",  # nested 10,000 deep
        b'{"q": ' * 10_000 + b"1" + b"}" * 10_000,
        b"x" * 2_000_000,  # huge
        b"\xff\xfe\x00",  # not UTF-8
        b'{"id": "types", "question": ["not", "text"], "confirm": "yes"}',  # wrong types
        b"{not json",
    ]

    async def run() -> tuple[list[Received], dict[str, Any]]:
        plugin = await started(AskPlugin(url=mosquitto.url, publish_answers=True, intents=False,
                                         requesters=requesters(tmp_path), max_request_bytes=100_000, **FAST),
                               "junk", tmp_path)  # fmt: skip
        with Subscriber(mosquitto, prefix + "answers") as subscriber:
            for payload in junk:
                await ask(mosquitto, prefix + "ask", payload)
            await ask(mosquitto, prefix + "ask", signed({"id": "after", "question": "still there?"}))
            got = await received(subscriber, lambda m: len(m) >= 1)
        status = plugin.netgpt_status()
        await plugin.netgpt_close()
        return got, status

    got, status = asyncio.run(run())
    assert list(answers_of(got, prefix)) == ["after"], "the plugin reads on after the junk"
    assert status["malformed"] == {"too_large": 1, "not_utf8": 1, "not_json": 1, "too_deep": 2, "bad_fields": 1}
    assert status["received"] == len(junk) + 1 and status["dropped"]["error"] == 0


# -- netgptd ask -------------------------------------------------------------------------------


def test_netgptd_ask_signs_publishes_and_prints_the_answer(mosquitto: Mosquitto, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    keys = requesters(tmp_path)
    base = ["ask", "--url", mosquitto.url, "--site", "lab", "--sensor", "cli", "--requester", "ops", "--key", keys["ops"]]

    loop = asyncio.new_event_loop()  # the sensor's, in a thread: the command runs here, in the main thread
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    plugin = AskPlugin(url=mosquitto.url, publish_answers=True, intents=False, requesters=keys, **FAST)
    asyncio.run_coroutine_threadsafe(started(plugin, "cli", tmp_path), loop).result(10)
    capsys.readouterr()  # the plugin's log lines so far
    results = []
    try:
        for argv in (base + ["--id", "cli-1", "what", "runs", "here?"],
                     base + ["--id", "cli-2", "--intent", "isolate", "0.0.0.0/0"],
                     [*base[:-4], "--requester", "mallory", "--key", keys["ops"], "--wait", "1", "hello?"]):  # fmt: skip
            code = main(argv)
            results.append((code, *capsys.readouterr()))
    finally:
        asyncio.run_coroutine_threadsafe(plugin.netgpt_close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    (ok, out, _), (dangerous, refused, _), (unknown, silent, why) = results
    answer = json.loads(out)["answer"]
    assert ok == 0 and (answer["id"], answer["status"]) == ("cli-1", "local")
    assert dangerous == 1 and json.loads(refused)["answer"]["reason"] == "dangerous"
    assert unknown == 1 and silent == "" and "no answer" in why and "requesters" in why
    assert main(["ask", "--requester", "ops", "--key", str(tmp_path / "none.key"), "x"]) == 2
    assert "none.key: cannot read the key" in capsys.readouterr().err
