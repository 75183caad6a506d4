"""``netgptd ask``: sign an operator's request with a requester key and send it to a sensor's ``.../ask``.

    netgptd ask --requester ops --key ops.key "what is unusual today?"
    netgptd ask --requester ops --key ops.key --intent "block torrents for the guests"
    netgptd ask --requester ops --key ops.key --intent --confirm "isolate 10.0.0.1"
    netgptd ask --requester ops --key ops.key --print "..."      # the signed JSON only

The request is signed as the sensor checks it (:mod:`netgptd.cloud.signing`),
published at QoS 1, and what comes back with its id (intent events, then the
answer) is printed as JSON lines. The sensor answers nothing it does not
accept (unsigned, a wrong key, an unknown requester, a clock off by more
than its ``signature_window``, over the rate), so no answer in ``--wait``
seconds says to check those.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

from netgptd.cloud.requests import INTENT, QUESTION
from netgptd.cloud.signing import read_key, sign

EXIT_ANSWERED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def signed_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request the arguments describe, signed (ValueError: the key file cannot be used)."""
    body: dict[str, Any] = {"id": args.id or str(uuid.uuid4()), INTENT if args.intent else QUESTION: " ".join(args.text)}
    if args.confirm:
        body["confirm"] = True
    return sign(body, args.requester, read_key(args.key), time.time())


async def exchange(link: Any, prefix: str, request: dict[str, Any], wait: float) -> list[dict[str, Any]]:
    """Publish ``request`` on ``<prefix>ask``; the events with its id until its answer, or ``wait`` seconds."""
    got: list[dict[str, Any]] = []
    async with link.client(f"netgptd-ask-{uuid.uuid4().hex[:12]}", clean_session=True) as client:
        await client.subscribe(prefix + "answers", qos=1)
        await client.subscribe(prefix + "intents", qos=1)
        await client.publish(prefix + "ask", json.dumps(request).encode(), qos=1)
        if wait <= 0:
            return got

        async def collect() -> None:
            async for message in client.messages:
                try:
                    event = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                except ValueError:
                    continue
                ident = (event.get("answer") or {}).get("id", event.get("id"))
                if ident == request["id"]:
                    got.append(event)
                    if event.get("event_type") == "answer":
                        return

        try:
            await asyncio.wait_for(collect(), wait)
        except asyncio.TimeoutError:
            pass
    return got


def cmd_ask(args: argparse.Namespace) -> int:
    try:
        request = signed_request(args)
    except ValueError as exc:
        print(f"netgptd ask: --key {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.print:
        print(json.dumps(request, ensure_ascii=False))
        return EXIT_ANSWERED
    from netgptd_plugins.mqtt import Link  # the ask and mqtt plugins' own URL, credentials and TLS handling

    try:
        link = Link.checked(args.url, args.topic_prefix, args.username, "", args.password_file, args.ca_file, "", "",
                            30, 0.5, 30.0, 5.0)  # fmt: skip
        prefix = args.topic_prefix.format(site=args.site, sensor=args.sensor)
    except (ValueError, KeyError) as exc:
        print(f"netgptd ask: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        got = asyncio.run(exchange(link, prefix, request, args.wait))
    except Exception as exc:  # noqa: BLE001 -- aiomqtt.MqttError and OSError: one line, no traceback
        print(f"netgptd ask: {link}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    for event in got:
        print(json.dumps(event, ensure_ascii=False))
    answers = [e["answer"] for e in got if e.get("event_type") == "answer"]
    if args.wait > 0 and not answers:
        print(f"netgptd ask: no answer to {request['id']} within {args.wait:g} s (a sensor answers only requests it "
              "accepts: check [plugins.ask] requesters, the key, both clocks and the rate)", file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    return EXIT_REFUSED if answers and answers[0]["status"] == "rejected" else EXIT_ANSWERED


def add_ask_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``ask`` subcommand, on the ``netgptd`` command's subparsers."""
    p = sub.add_parser("ask", help="sign a question or an intent request with a requester key and ask a sensor on MQTT",
                       description="Sign an operator request (HMAC-SHA256 with the requester's key, a timestamp and "
                                   "a nonce), publish it on <prefix>ask and print what comes back with its id "
                                   "(intent events, then the answer) as JSON lines.")  # fmt: skip
    p.add_argument("text", nargs="+", metavar="TEXT", help="the question, or with --intent the operator's request")
    p.add_argument("--requester", required=True, metavar="NAME", help="the name the sensor knows the key by")
    p.add_argument("--key", required=True, metavar="FILE", help="the requester's key file (as in [plugins.ask] requesters)")
    p.add_argument("--intent", action="store_true", help="ask for intents to be published, not for an answer")
    p.add_argument("--confirm", action="store_true",
                   help="confirm an intent that would cut the site or the sensor off (0.0.0.0/0, the gateway, ...)")  # fmt: skip
    p.add_argument("--id", default="", help="the request's id (default: a fresh UUID)")
    p.add_argument("--print", action="store_true", help="print the signed request and send nothing")
    p.add_argument("--url", default="mqtt://127.0.0.1:1883", help="the broker (mqtt:// or mqtts://, user:password@ allowed)")
    p.add_argument("--username", default="", help="broker user name")
    p.add_argument("--password-file", default="", metavar="FILE", help="broker password, from a file")
    p.add_argument("--ca-file", default="", metavar="FILE", help="CA certificates for mqtts:// (default: the system's)")
    p.add_argument("--site", default="default", help="the sensor's site (default: default)")
    p.add_argument("--sensor", default="sensor", help="the sensor's name (default: sensor)")
    p.add_argument("--topic-prefix", default="netgpt/{site}/{sensor}/", help="as the sensor's (default %(default)s)")
    p.add_argument("--wait", type=float, default=30.0, metavar="S", help="seconds to wait for the answer (0: do not)")
    p.set_defaults(func=cmd_ask)
    return p
