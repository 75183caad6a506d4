"""Ask the sensor: operator questions on MQTT, completed by the edge, answered by a cloud LLM.

The NetGPT cloud-edge split: a question published on ``<prefix>ask`` (JSON
``{"id": "...", "question": "..."}``, signed, see below) is completed by the
edge with what the sensor knows (site profile, current state, recent alerts:
:mod:`netgptd.cloud.context`, a template), its addresses are replaced by
placeholders (``redact = true``), and it is sent to an OpenAI-compatible
``/v1/chat/completions`` (``cloud_url``: a cloud provider, vLLM, or
``netgptd serve-llm``). The answer goes out as an ``answer`` event::

    {"timestamp": ..., "event_type": "answer",
     "answer": {"id": ..., "question": ..., "prompt": <the completed prompt, as sent>,
                "text": ..., "model": ..., "latency_s": ..., "status": "ok" | "local" | "error" | "rejected",
                "usage": {...}, "redacted": <addresses replaced>, "reason": <why rejected>}}

Answers follow the cloud prompts' redaction: every address in the answer
(question, text, prompt, intents, reasons) is the placeholder the prompt got
(``redact_answers = false`` shows them as they are). The event is handed to
the host (``SensorContext.emit``), so it reaches every plugin: the EVE file,
and the ``mqtt`` plugin, which publishes it on ``<prefix>answers`` at QoS 1
through its on-disk outbox. Without the mqtt plugin, ``publish_answers =
true`` publishes it (and the intent events below, on ``<prefix>intents``) on
this plugin's own connection instead (QoS 1, held in memory while the broker
is away); with both, each answer would come twice.

Who may ask (the control channel): a request is signed by a requester the
sensor is configured with (``requesters = {NAME = "KEY FILE"}``; HMAC-SHA256
over its canonical form with a timestamp and a nonce:
:mod:`netgptd.cloud.signing`, ``netgptd ask`` signs). Unsigned requests,
unknown requesters, bad signatures, stale or replayed requests are refused;
``unsigned_questions = true`` lets unsigned *questions* (never intent
requests) through, plain text included, sharing one ``anonymous`` rate.
Each requester has a token bucket (``burst`` at once, then ``rate`` a
second). At most ``queue_max`` messages wait to be read and ``max_pending``
admitted requests wait for their answer. What is malformed (over
``max_request_bytes``, not UTF-8, not JSON, nested too deep, unknown fields,
wrong types: :mod:`netgptd.cloud.requests`), refused before admission, over
the rate or over a bound is counted and dropped *silently*: answering it
would let a stranger make the sensor publish, so there are never more
answers than admitted requests. An admitted request that cannot be carried
out (an empty text, a dangerous intent) gets a ``rejected`` answer with the
reason. Counters are in ``netgpt_status`` (``received``, ``accepted``,
``rate_limited``, ``refused``/``dropped``/``malformed`` by reason), hence in
the stats event and on Prometheus.

Operator intents: a request ``{"id": "...", "intent": "keep video calls
smooth for the lab during exams"}`` asks for intents, not an answer: the
intent model (a pretrained English encoder) reads the text as an operator's
request (:func:`netgptd.intent.engine.understand_text`, with the site profile:
``intent_profile``, a TOML file, or one from ``[sensor]``'s site, location
and role), and each schema-valid intent it finds (``source: operator``) is
emitted as an ``intent`` event carrying the request's id, so the mqtt plugin
publishes it on ``<prefix>intents``; the answer (``status: intents``) lists
them and says what was not understood (a question, an undo, an unknown
place...). No cloud is asked. An intent that would cut the site or the sensor off
(:mod:`netgptd.cloud.guard`: every address, the default gateway, the
sensor's own addresses, ``protected`` ones, the whole site) is published
only when the request says ``"confirm": true``; else the request is refused
with the reason and nothing is published. A *question* never publishes an
intent (a question such as "is 10.0.0.5 fine?" must not isolate anything):
what the edge LLM reads in it, less any dangerous intent, goes into the
answer as ``"intents"`` and into the completed prompt, marked as not
applied. ``intents = false`` turns the intent model off (absent when it
cannot be loaded)::

    {"timestamp": ..., "event_type": "intent",
     "intent": {"action": ..., "target": {...}, "reason": ..., "confidence": ..., "source": "operator"},
     "netgpt": {"request_id": <the request's id>}}

Without ``cloud_url`` the answer says so: its text is a local summary and
the completed prompt (``status: local``). A cloud failure (after the
client's retries) gives ``status: error`` with the reason and the local
summary. Questions are answered one at a time, in a daemon thread, never
in the pipeline's loop.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiomqtt
import structlog

from netgptd.cloud.client import ChatResult, CloudClient, CloudError, api_key_from
from netgptd.cloud.context import SYSTEM_PROMPT, SensorState, SiteProfile, complete_prompt, local_summary
from netgptd.cloud.admission import ANONYMOUS, RATE_LIMITED, Admission
from netgptd.cloud.guard import Protected, dangers, discovered, sentence_dangers
from netgptd.cloud.redact import Redactor
from netgptd.cloud.requests import (INTENT, MALFORMED, MAX_REQUEST_BYTES, QUESTION, Malformed, answer_event,
                                    parse_request, redacted, text_problem, with_intents)  # fmt: skip
from netgptd.cloud.signing import REFUSED, read_key
from netgptd.eve import dumps, timestamp
from netgptd.intent import SiteProfile as IntentProfile
from netgptd.intent import SiteState, load_profile, validate
from netgptd.intent.nlu import CONFIG_FILE as NLU_CONFIG
from netgptd.intent.nlu import ActionModel
from netgptd.plugin_host import SensorContext, hookimpl
from netgptd_plugins.intents import sensor_profile
from netgptd_plugins.mqtt import Link, _check_positive, _check_topic, _describe

log = structlog.get_logger(__name__)

OUTGOING_MAX = 100  # answers held for publish_answers while the broker is away
LOCAL_MODEL = "none (edge template)"
REQUESTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DROPPED = ("queue_full", "busy", "stopping", "error")  # why an admitted (or unread) request was not answered


def _inbox(on_overflow: Callable[[], None]) -> type[asyncio.Queue[Any]]:
    """aiomqtt's incoming-message queue type: a message that finds it full is dropped and ``on_overflow`` called
    (instead of aiomqtt's own log line per discarded message)."""

    class Inbox(asyncio.Queue):  # type: ignore[type-arg]
        def put_nowait(self, item: Any) -> None:
            if self.full():
                on_overflow()
                return
            super().put_nowait(item)

    return Inbox


def _powers_of_ten(count: int) -> bool:
    """1, 10, 100, ...: when a counter that may grow per message is worth a log line."""
    return count > 0 and str(count).strip("0") == "1"


def _crashed(task: asyncio.Task[Any]) -> None:
    """A bug (not a broker or cloud problem, those are handled) ends a task: say so when it happens."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("ask_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")


def in_daemon_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """``function(*args)`` in a daemon thread, as a future of the running loop.

    Unlike ``asyncio.to_thread``, a request still waiting on the cloud does
    not hold up the daemon's exit (the default executor is joined at the end).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is gone: nobody waits any more
            pass

    threading.Thread(target=run, name="ask-cloud", daemon=True).start()
    return future


class AskPlugin:
    """Answers operator questions from ``<prefix>ask`` (see the module docstring).

    MQTT settings as the mqtt plugin's: ``url``, ``topic_prefix``,
    ``username``, ``password``/``password_file``, ``ca_file``, ``cert_file``,
    ``key_file``, ``client_id`` (``netgptd-<site>-<sensor>-ask``),
    ``keepalive``, ``backoff_initial``/``backoff_max``. The cloud LLM:
    ``cloud_url`` (an OpenAI-compatible base URL such as
    ``https://api.example.com/v1``; empty: local answers only), ``model``,
    ``api_key_file`` or ``api_key_env`` (the name of an environment
    variable), ``timeout`` seconds per attempt, ``retries``, ``max_tokens``,
    ``temperature``, ``redact`` (addresses to placeholders; default true).
    The site profile: ``location`` and ``role`` (default: ``[sensor]``'s, once
    the host passes them), ``working_hours`` (free text, e.g. "Mon-Fri
    08:00-18:00"). What is kept: ``recent_flows`` flows, ``recent_alerts``
    alerts. Operator intents: ``intents`` (on by default), ``intent_profile``
    (a site-profile TOML file; empty: one from ``[sensor]``),
    ``intent_model_dir`` (empty: the shipped intent model; a site's own from
    ``netgptd llm finetune``). The control
    channel: ``requesters`` (name -> key file), ``unsigned_questions``,
    ``signature_window`` seconds, ``rate`` (requests a second per requester)
    and ``burst``, ``max_request_bytes``, ``queue_max`` (messages waiting to
    be read), ``max_pending`` (admitted requests waiting for their answer),
    ``protected`` (addresses or networks no intent may cut off without a
    confirmation, besides the discovered gateway and own addresses:
    ``discover_protected``), ``redact_answers``.
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        topic_prefix: str = "netgpt/{site}/{sensor}/",
        username: str = "",
        password: str = "",
        password_file: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        client_id: str = "",
        keepalive: int = 30,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        cloud_url: str = "",
        model: str = "",
        api_key_file: str = "",
        api_key_env: str = "",
        timeout: float = 60.0,
        retries: int = 2,
        max_tokens: int = 512,
        temperature: float = 0.2,
        redact: bool = True,
        location: str = "",
        role: str = "",
        working_hours: str = "",
        recent_flows: int = 1000,
        recent_alerts: int = 20,
        max_pending: int = 8,
        publish_answers: bool = False,
        close_timeout: float = 5.0,
        intents: bool = True,
        intent_profile: str = "",
        intent_model_dir: str = "",
        requesters: dict[str, str] | None = None,
        unsigned_questions: bool = False,
        signature_window: float = 60.0,
        rate: float = 0.2,
        burst: int = 5,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        queue_max: int = 100,
        protected: list[str] | None = None,
        discover_protected: bool = True,
        redact_answers: bool = True,
    ) -> None:
        self.link = Link.checked(url, topic_prefix, username, password, password_file, ca_file, cert_file, key_file,
                                 keepalive, backoff_initial, backoff_max, close_timeout)  # fmt: skip
        _check_positive(max_pending=max_pending, recent_flows=recent_flows, recent_alerts=recent_alerts,
                        signature_window=signature_window, rate=rate, burst=burst,
                        max_request_bytes=max_request_bytes, queue_max=queue_max)  # fmt: skip
        keys = {}
        for name, path in (requesters or {}).items():
            if not REQUESTER.match(name) or name == ANONYMOUS:
                raise ValueError(f"requesters: {name!r} is not a requester name (1-64 letters, digits, '.', '_', '-'; "
                                 f"not {ANONYMOUS!r})")  # fmt: skip
            if not isinstance(path, str):
                raise ValueError(f"requesters.{name}: expected the path of a key file, got {type(path).__name__}")
            keys[name] = read_key(path, name)
        self.admission = Admission(keys, signature_window, rate, burst, unsigned_questions)
        self.protected = Protected.of(protected or [], discovered() if discover_protected else [])
        self.max_request_bytes, self.queue_max, self.redact_answers = max_request_bytes, queue_max, redact_answers
        api_key = api_key_from(api_key_file, api_key_env)
        if api_key and not cloud_url:
            raise ValueError("api_key_file/api_key_env: given without a cloud_url")
        self.client = CloudClient(cloud_url, model, api_key, timeout, retries, max_tokens=max_tokens,
                                  temperature=temperature) if cloud_url else None  # fmt: skip
        self.client_id = client_id
        self.redact, self.max_pending, self.publish_answers = redact, max_pending, publish_answers
        self.location, self.role, self.working_hours = location, role, working_hours
        self.state = SensorState(recent_flows, recent_alerts)
        self.profile = SiteProfile(location=location, role=role, working_hours=working_hours)
        if intent_model_dir and not (Path(intent_model_dir) / NLU_CONFIG).is_file():
            raise ValueError(f"intent_model_dir: {intent_model_dir} is not an intent model folder (no {NLU_CONFIG})")
        try:
            self.intent_profile: IntentProfile | None = load_profile(intent_profile) if intent_profile else None
        except ValueError as exc:  # ProfileError: names the file and the entry
            raise ValueError(f"intent_profile: {exc}") from None
        self.intents = intents
        self.intent_model_dir = intent_model_dir or None
        self.site_state = SiteState()  # host names learned from traffic: none are reported in EVE yet
        self._intent_llm: Any = None
        self._intent_error = ""  # why the intent model is unavailable
        self._intent_lock = threading.Lock()  # the model is loaded once, by whichever thread comes first

        self.prefix = self.ask_topic = self.answers_topic = self.intents_topic = ""
        self.connected = False
        self.counts = {"received": 0, "accepted": 0, "rate_limited": 0, "answered": 0, "local": 0, "failed": 0,
                       "published": 0, "reconnects": 0, "intents": 0, "intent_errors": 0,
                       "published_intents": 0}  # fmt: skip
        self.refused = dict.fromkeys((*REFUSED, "invalid", "dangerous"), 0)
        self.dropped = dict.fromkeys(DROPPED, 0)
        self.malformed = dict.fromkeys(MALFORMED, 0)
        self._emit: Callable[[dict[str, Any]], None] = lambda event: None
        self._pending: set[asyncio.Task[None]] = set()
        self._outgoing: deque[tuple[str, bytes]] = deque(maxlen=OUTGOING_MAX)  # (topic, payload)
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    @property
    def broker(self) -> str:
        return str(self.link)

    # -- hooks ----------------------------------------------------------------------

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self.prefix = self.link.topic_prefix.format(site=sensor.site, sensor=sensor.sensor)
        _check_topic("topic_prefix", self.prefix)
        self.ask_topic, self.answers_topic = self.prefix + "ask", self.prefix + "answers"
        self.intents_topic = self.prefix + "intents"
        self.client_id = self.client_id or f"netgptd-{sensor.site}-{sensor.sensor}-ask"
        self.profile = SiteProfile(site=sensor.site, sensor=sensor.sensor,
                                   location=self.location or str(getattr(sensor, "location", "") or ""),
                                   role=self.role or str(getattr(sensor, "role", "") or ""),
                                   working_hours=self.working_hours)  # fmt: skip
        self.intent_profile = self.intent_profile or sensor_profile(sensor)
        if self.intents:  # load now, in a thread, so the first question does not wait for it
            threading.Thread(target=self._intent_model, name="ask-intents", daemon=True).start()
        names = sorted(self.admission.verifier.keys)
        (log.info if names or self.admission.unsigned_questions else log.warning)(
            "ask_requesters", requesters=names, unsigned_questions=self.admission.unsigned_questions,
            protected=len(self.protected.entries),
            detail="" if names or self.admission.unsigned_questions else "no requesters: every request is refused")  # fmt: skip
        self._emit = sensor.emit
        self._one_at_a_time = asyncio.Lock()
        self._wakeup = asyncio.Event()  # an answer to publish
        self._stop = asyncio.Event()  # disconnect now
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ask")
        self._task.add_done_callback(_crashed)

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        if event.get("event_type") != "answer":
            self.state.feed(event)

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        status = {"connected": int(self.connected), "pending": len(self._pending), **self.counts,
                  "refused": dict(self.refused), "dropped": dict(self.dropped), "malformed": dict(self.malformed)}
        if self.client is not None:
            cloud = self.client.status()
            status |= {f"cloud_{k}": cloud.get(k, 0) for k in ("requests", "retries", "failures", "errors_timeout")}
        return status

    @hookimpl
    def netgpt_close(self) -> Awaitable[None]:
        return self._close()

    # -- questions ------------------------------------------------------------------

    def on_request(self, payload: bytes) -> None:
        """One message from the ask topic (loop thread): answer it in a task, refuse it, or count and drop it.

        Only an admitted request (signed by a configured requester, in its rate) gets an answer; what is
        malformed, unsigned, badly signed, replayed, over the rate or over ``max_pending`` is counted, silently.
        """
        self.counts["received"] += 1
        try:
            request = parse_request(payload, self.max_request_bytes)
        except Malformed as bad:
            self._tally(self.malformed, bad.reason, "ask_malformed", error=str(bad)[:200], size=len(payload))
            return
        verdict = self.admission.admit(request, time.time())
        if verdict == RATE_LIMITED:
            self.counts["rate_limited"] += 1
            if _powers_of_ten(self.counts["rate_limited"]):
                log.warning("ask_rate_limited", requester=request.requester or ANONYMOUS,
                            count=self.counts["rate_limited"])  # fmt: skip
            return
        if verdict:
            self._tally(self.refused, verdict, "ask_refused", id=request.id[:64])
            return
        if not self._accepting or len(self._pending) >= self.max_pending:
            self._tally(self.dropped, "busy" if self._accepting else "stopping", "ask_dropped", id=request.id[:64])
            return
        self.counts["accepted"] += 1
        problem = text_problem(request)
        if problem:
            self._refuse(request.id, request.text[:200], "invalid", problem)
            return
        if request.kind == INTENT and not request.confirm:
            why = sentence_dangers(request.text, self.protected)
            if why:
                self._refuse(request.id, request.text, "dangerous", self._needs_confirm(why))
                return
        task = asyncio.get_running_loop().create_task(self.answer(request.id, request.text, request.kind,
                                                                  request.confirm), name=f"ask-{request.id}")  # fmt: skip
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_crashed)

    def _tally(self, counter: dict[str, int], reason: str, event: str, **fields: Any) -> None:
        """Count one dropped or refused message; log it the 1st, 10th, 100th... time (never the message)."""
        counter[reason] += 1
        if _powers_of_ten(counter[reason]):
            log.warning(event, reason=reason, count=counter[reason], **fields)

    @staticmethod
    def _needs_confirm(why: list[str]) -> str:
        return (f"this would cut the site or the sensor off ({'; '.join(why)}); send it again with "
                '"confirm": true if that is what you want.')

    def _refuse(self, request_id: str, question: str, reason: str, text: str, **extra: Any) -> dict[str, Any]:
        """An admitted request that is not carried out: a ``rejected`` answer that says why."""
        self.refused[reason] += 1
        log.info("ask_refused", id=request_id[:64], reason=reason)
        return self._deliver(answer_event(request_id, question, "", f"Not answered: {text}", "", 0.0, "rejected",
                                          reason=reason, **extra))  # fmt: skip

    async def answer(self, request_id: str, question: str, kind: str = QUESTION, confirm: bool = False) -> dict[str, Any]:
        """Complete, redact, ask, restore (a question) or read and publish intents (an intent request);
        the answer event is delivered and returned (as delivered: redacted unless ``redact_answers = false``)."""
        async with self._one_at_a_time:
            started = time.monotonic()
            intents, unread = None, []
            if self.intents:
                intents, errors, unread = await in_daemon_thread(self._operator_intents, question)
                self.counts["intents"] += len(intents or [])
                self.counts["intent_errors"] += errors
            if kind == INTENT:
                return self._publish_intents(request_id, question, intents, started, confirm, unread)
            if intents:  # a question never yields an intent that would cut the site off, not even to be read
                intents = [i for i in intents if not dangers(i, self.protected)]
            prompt = complete_prompt(question, self.profile, self.state)  # the state when its turn comes
            if intents:
                prompt = with_intents(prompt, question, intents)
            redactor = Redactor()
            sent = redactor.redact(prompt) if self.redact else prompt
            extra: dict[str, Any] = {"redacted": len(redactor)}
            if intents is not None:
                extra["intents"] = intents
            if self.client is None:
                status, model = "local", LOCAL_MODEL
                text = ("No cloud LLM is configured ([plugins.ask] cloud_url is empty), so this is not a model's "
                        "answer: it is the sensor's local summary and the completed prompt a cloud LLM would get.\n\n"
                        f"Local summary: {local_summary(self.state)}\n\nCompleted prompt:\n{prompt}")  # fmt: skip
            else:
                messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": sent}]
                try:
                    result: ChatResult = await in_daemon_thread(self.client.chat, messages)
                except CloudError as exc:
                    status, model = "error", self.client.model
                    text = (f"The cloud LLM gave no answer ({exc}). Local summary: {local_summary(self.state)}")
                    extra["error"] = str(exc)
                else:
                    status, model = "ok", result.model or self.client.model
                    text = redactor.restore(result.text) if self.redact else result.text
                    extra |= {"usage": result.usage, "finish_reason": result.finish_reason, "attempts": result.attempts}
            counter = {"ok": "answered", "local": "local", "error": "failed"}[status]
            self.counts[counter] += 1
            event = answer_event(request_id, question, sent, text, model, time.monotonic() - started, status, **extra)
            log.info("ask_answered", id=request_id, status=status, model=model, latency_s=event["answer"]["latency_s"])
            return self._deliver(event, redactor)

    def _publish_intents(self, request_id: str, sentence: str, intents: list[dict[str, Any]] | None,
                         started: float, confirm: bool, unread: list[str]) -> dict[str, Any]:  # fmt: skip
        """An intent request: each intent out as an ``intent`` event, and an answer that lists them; none when
        one of them would cut the site off and the request is not confirmed."""
        why = [] if confirm else [w for i in intents or [] for w in dangers(i, self.protected)]
        if why:
            return self._refuse(request_id, sentence, "dangerous", self._needs_confirm(why), intents=intents)
        for intent in intents or []:
            self._deliver({"timestamp": timestamp(time.time_ns()), "event_type": "intent", "intent": intent,
                           "netgpt": {"request_id": request_id}})  # fmt: skip
        if intents is None:
            text, status = f"No intents: the intent model is unavailable ({self._intent_error or 'turned off'}).", "error"
        else:
            text = "; ".join([i["reason"] for i in intents] + [f"not understood: {x}" for x in unread]) \
                or "No intent found in this sentence."
            status = "intents"
        self.counts["answered" if status == "intents" else "failed"] += 1
        event = answer_event(request_id, sentence, "", text, "", time.monotonic() - started, status,
                             intents=intents or [])  # fmt: skip
        log.info("ask_intents", id=request_id, intents=len(intents or []), confirmed=confirm)
        return self._deliver(event)

    def _intent_model(self) -> Any:
        """The intent model, loaded on first use (any thread); None when it cannot be (logged once)."""
        with self._intent_lock:
            if self._intent_llm is None and not self._intent_error:
                try:
                    self._intent_llm = ActionModel.load(self.intent_model_dir)
                except Exception as exc:  # noqa: BLE001 -- NLUError, or the encoder package missing
                    self._intent_error = f"{type(exc).__name__}: {exc}"
                    log.error("ask_intent_model_unavailable", error=self._intent_error,
                              detail="questions are answered without operator intents")  # fmt: skip
            return self._intent_llm

    def _operator_intents(self, question: str) -> tuple[list[dict[str, Any]] | None, int, list[str]]:
        """In a daemon thread: the question's schema-valid operator intents (None without a model), how many
        failed (counted by the caller, in the loop thread), and what was not understood."""
        model = self._intent_model()
        if model is None:
            return None, 0, []
        from netgptd.intent.engine import understand_text

        try:
            result = understand_text(question, self.intent_profile, self.site_state, model)
        except Exception as exc:  # noqa: BLE001 -- the question is still answered
            log.warning("ask_intents_failed", error=f"{type(exc).__name__}: {exc}")
            return None, 1, []
        valid = []
        for intent in result.intents:
            try:
                validate(intent)  # understand() did; never hand on one that is not valid
            except ValueError:
                continue
            valid.append(intent)
        return valid, len(result.intents) - len(valid), result.not_understood

    def _deliver(self, event: dict[str, Any], redactor: Redactor | None = None) -> dict[str, Any]:
        """Hand an event on (an answer redacted with ``redactor``, the prompt's, unless redact_answers = false)."""
        if event.get("event_type") == "answer" and self.redact_answers:
            event = redacted(event, redactor or Redactor())
        self._emit(event)  # to every plugin: EVE, the mqtt plugin's outbox
        if self.publish_answers:
            topic = self.intents_topic if event.get("event_type") == "intent" else self.answers_topic
            self._outgoing.append((topic, dumps(event)))
            self._wakeup.set()
        return event

    # -- MQTT -----------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, subscribe, take questions and publish answers; reconnect with backoff until closed."""
        delay, outage_logged, connects = self.link.backoff_initial, False, 0
        while not self._stop.is_set():
            try:
                async with self._new_client() as client:
                    await client.subscribe(self.ask_topic, qos=1)
                    self.connected, delay, outage_logged = True, self.link.backoff_initial, False
                    self.counts["reconnects"] += bool(connects)
                    connects += 1
                    log.info("ask_connected", broker=self.broker, topic=self.ask_topic)
                    await self._session(client)
                return
            except aiomqtt.MqttError as exc:
                self.connected = False
                if self._stop.is_set():
                    return
                retry_in = round(random.uniform(delay / 2, delay), 2)
                delay = min(delay * 2, self.link.backoff_max)
                (log.debug if outage_logged else log.warning)("ask_disconnected", broker=self.broker,
                                                              error=_describe(exc), retry_in=retry_in)  # fmt: skip
                outage_logged = True
            try:
                await asyncio.wait_for(self._stop.wait(), retry_in)
            except asyncio.TimeoutError:
                pass

    def _new_client(self) -> aiomqtt.Client:
        overflow = _inbox(lambda: self._tally(self.dropped, "queue_full", "ask_dropped"))
        return self.link.client(self.client_id, clean_session=True, max_queued_incoming_messages=self.queue_max,
                                queue_type=overflow)  # fmt: skip

    async def _session(self, client: aiomqtt.Client) -> None:
        tasks = [asyncio.create_task(self._read(client)), asyncio.create_task(self._publish(client)),
                 asyncio.create_task(self._stop.wait())]  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.connected = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # MqttError: the link dropped

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            try:
                self.on_request(payload)
            except Exception as exc:  # noqa: BLE001 -- a bug on one message must not end the ask channel
                self._tally(self.dropped, "error", "ask_request_failed", error=f"{type(exc).__name__}: {exc}"[:200])

    async def _publish(self, client: aiomqtt.Client) -> None:
        """publish_answers: the held answers (and intents), oldest first, each removed once acknowledged."""
        while True:
            self._wakeup.clear()
            while self._outgoing:
                topic, payload = self._outgoing[0]
                await client.publish(topic, payload, qos=1)
                self._outgoing.popleft()
                self.counts["published" if topic == self.answers_topic else "published_intents"] += 1
            await self._wakeup.wait()

    async def _close(self) -> None:
        """Refuse new questions, finish the ones asked (up to close_timeout), publish what is held, disconnect."""
        if self._task is None:
            return
        self._accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.link.close_timeout
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=self.link.close_timeout)
            for task in late:
                task.cancel()
        while self._outgoing and self.connected and loop.time() < deadline:
            await asyncio.sleep(0.02)
        self._stop.set()
        done, _ = await asyncio.wait({self._task}, timeout=1.0)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
        log.info("ask_closed", broker=self.broker, unanswered=len(self._pending), unpublished=len(self._outgoing))
