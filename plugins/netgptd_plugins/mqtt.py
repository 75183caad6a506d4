"""MQTT sink: alerts, intents and answers delivered at least once; trends (and flows) live.

Topics, under ``topic_prefix`` (``{site}`` and ``{sensor}`` filled in):

==========  =====  ========================================================================
``alerts``  QoS 1  ``alert`` events, through the on-disk outbox
``intents`` QoS 1  ``intent`` events, through the outbox
``answers`` QoS 1  ``answer`` events, through the outbox
``trends``  QoS 0  ``trend`` events, only while connected
``flows``   QoS 0  ``flow`` and ``flood_summary`` events, only while connected and ``publish_flows``
``status``  QoS 1  retained ``online``; ``offline`` on close, or as the will
==========  =====  ========================================================================

A flood's flows come bounded (``LOGS_EACH_FLOW``, :mod:`netgptd.flood_log`):
past the budget, one ``flood_summary`` per flood and window instead.

One background task owns the connection. It delivers the outbox oldest
first and removes a row only once its publish is acknowledged: aiomqtt's
``publish`` at QoS 1 returns when paho's ``on_publish`` fires, which for
QoS 1 is on the broker's PUBACK (at QoS 0, once written to the socket).
That wait does not notice a dropped connection (it would sit out aiomqtt's
10 s timeout), so the connection is watched alongside through
``client.messages``, which raises as soon as it drops.

A fresh ``aiomqtt.Client`` is made per connection: paho keeps QoS 1
messages that were in flight and re-sends them when the same client
reconnects, which would duplicate (and reorder) what the outbox sends
again. The session is persistent (``clean_session=False``, fixed client id)
so the broker keeps this client's state across short outages.

A full disk (or any failed write of the outbox) does not stop delivery:
QoS 1 messages the outbox cannot take are held in memory (at most
``outbox_max``, the oldest dropped and counted) and published from there,
after the outbox's older rows. The outbox is tried again at most every
``OUTBOX_RETRY`` seconds; once it takes a write, what is held goes in first,
so the order holds (except for a message in flight from memory when the
link drops at that very moment, which then follows). Each change between
writable and not is logged once.

Health: the plugin is dead when its delivery task ended with an error, or
when it is connected with messages waiting and none was acknowledged for
``stall_after`` seconds. A broker that is away is not dead: the outbox
holds the messages and the reconnects go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import dataclass
from collections import deque
from pathlib import Path
from typing import Any, Awaitable
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog

from netgptd.eve import dumps
from netgptd.files import readable
from netgptd.mqtt_names import check_mqtt, topic_problem
from netgptd.outbox import Item, Outbox, OutboxError
from netgptd.plugin_host import SensorContext, hookimpl

log = structlog.get_logger(__name__)

SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
QUEUED_TOPICS = {"alert": "alerts", "intent": "intents", "answer": "answers"}  # event_type -> topic, QoS 1
LIVE_TOPICS = {"trend": "trends"}  # QoS 0, never queued
FLOW_TOPICS = {"flow": "flows", "flood_summary": "flows"}  # QoS 0, with publish_flows
ONLINE, OFFLINE = b"online", b"offline"
OUTBOX_NAME = "mqtt-outbox.sqlite3"
INFLIGHT = 10  # publishes awaited at once (aiomqtt warns above 10 pending calls)
LIVE_MAX = 1000  # QoS 0 messages held while the connection is busy; the oldest go first
CLOSE_GRACE = 1.0  # seconds after close_timeout to say offline and disconnect
OUTBOX_RETRY = 1.0  # seconds between attempts to write an outbox that failed


class _DebugEvents(logging.Handler):
    """paho's own log lines (such as "failed to receive on socket: ...") as
    structlog debug events, not plain text on stderr: the ``mqtt_disconnected``
    warning already reports the outage, once."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("mqtt_client_log", level_name=record.levelname.lower(), message=record.getMessage())


CLIENT_LOG = logging.getLogger(f"{__name__}.client")
CLIENT_LOG.propagate = False
CLIENT_LOG.setLevel(logging.WARNING)  # paho logs every packet at debug; not worth formatting
CLIENT_LOG.addHandler(_DebugEvents())


@dataclass(frozen=True)
class Link:
    """A checked broker connection, shared by the plugins that talk MQTT (mqtt, ask)."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    username: str
    password: str
    topic_prefix: str
    keepalive: int
    backoff_initial: float
    backoff_max: float
    close_timeout: float

    @classmethod
    def checked(cls, url: str, topic_prefix: str, username: str, password: str, password_file: str, ca_file: str,
                cert_file: str, key_file: str, keepalive: int, backoff_initial: float, backoff_max: float,
                close_timeout: float) -> Link:  # fmt: skip
        """The settings made one; a ValueError names the setting that is wrong."""
        tls, host, port, url_user, url_password = _parse_url(url)
        username = _one_of("username", url=url_user, username=username)
        file_password = _read_password(password_file) if password_file else ""
        password = _one_of("password", url=url_password, password=password, password_file=file_password)
        if password and not username:
            raise ValueError("password: given without a username")
        if not tls:
            for setting, value in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
                if value:
                    raise ValueError(f"{setting}: needs an mqtts:// url (url is {_scheme_host_port(url)})")
        check_mqtt(topic_prefix, keepalive)
        _check_positive(backoff_initial=backoff_initial)
        if backoff_max < backoff_initial:
            raise ValueError(f"backoff_max: {backoff_max} is below backoff_initial {backoff_initial}")
        if close_timeout < 0:
            raise ValueError(f"close_timeout: must not be negative, got {close_timeout}")
        context = _tls_context(ca_file, cert_file, key_file) if tls else None
        return cls(host, port, context, username, password, topic_prefix, keepalive, backoff_initial, backoff_max,
                   close_timeout)  # fmt: skip

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, identifier: str, clean_session: bool, will: aiomqtt.Will | None = None,
               **options: Any) -> aiomqtt.Client:  # fmt: skip
        """A fresh aiomqtt client for one connection (``options``: more of aiomqtt.Client's keywords)."""
        return aiomqtt.Client(self.host, self.port, username=self.username or None, password=self.password or None,
                              identifier=identifier, clean_session=clean_session, keepalive=self.keepalive,
                              will=will, tls_context=self.tls, logger=CLIENT_LOG, **options)  # fmt: skip


class MqttPlugin:
    """Publishes events to an MQTT broker.

    Settings: ``url`` (``mqtt://`` or ``mqtts://``, default port 1883 or 8883,
    ``user:password@`` allowed); credentials from the URL, ``username`` and
    ``password``/``password_file``, each given once; ``ca_file`` (else the
    system's CAs), ``cert_file``/``key_file`` for a client certificate, all
    with ``mqtts://`` only; ``client_id`` (``netgptd-<site>-<sensor>``);
    ``outbox_path`` (``<state_dir>/mqtt-outbox.sqlite3``) holding up to
    ``outbox_max`` messages; reconnects after ``backoff_initial`` doubling to
    ``backoff_max`` seconds, jittered; ``close_timeout`` seconds to deliver
    what is queued when the daemon stops; dead (``netgpt_health``) when
    connected with messages waiting and none acknowledged for
    ``stall_after`` seconds.
    """

    LOGS_EACH_FLOW = True  # a flood's flows come bounded, with summaries (netgptd.flood_log)

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
        publish_flows: bool = False,
        outbox_max: int = 10000,
        outbox_path: str = "",
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 5.0,
        stall_after: float = 60.0,
    ) -> None:
        self.link = Link.checked(url, topic_prefix, username, password, password_file, ca_file, cert_file, key_file,
                                 keepalive, backoff_initial, backoff_max, close_timeout)  # fmt: skip
        _check_positive(outbox_max=outbox_max, stall_after=stall_after)
        self.stall_after = stall_after
        self.client_id = client_id
        self.live_topics = LIVE_TOPICS | (FLOW_TOPICS if publish_flows else {})
        self.outbox_max = outbox_max
        self.outbox_path = outbox_path

        self.prefix = self.status_topic = ""  # topic_prefix filled in at start
        self.connected = False
        self.published = 0
        self.reconnects = 0
        self._connects = 0
        self._delay = self.link.backoff_initial
        self._outage_logged = False
        self._live: deque[Item] = deque(maxlen=LIVE_MAX)
        self._outbox: Outbox | None = None
        self._outbox_file = Path(outbox_path)
        self._outbox_error: str | None = None  # why the outbox cannot be written, while it cannot
        self._outbox_retry_at = 0.0
        self._held: deque[Item] = deque()  # QoS 1 messages the outbox could not take, oldest first
        self.outbox_unwritten = 0
        self.held_dropped = 0
        self._progress_at = 0.0  # monotonic time of the last publish, or since when messages wait
        self._task: asyncio.Task[None] | None = None

    @property
    def broker(self) -> str:
        return str(self.link)

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self.prefix = self.link.topic_prefix.format(site=sensor.site, sensor=sensor.sensor)
        _check_topic("topic_prefix", self.prefix)  # a site or sensor name may bring a wildcard
        self.status_topic = self.prefix + "status"
        self.client_id = self.client_id or f"netgptd-{sensor.site}-{sensor.sensor}"
        self._outbox_file = Path(self.outbox_path or Path(sensor.state_dir) / OUTBOX_NAME)
        self._spool([])  # opens the outbox, or says why it cannot
        self._wakeup = asyncio.Event()  # something to send
        self._closing = asyncio.Event()  # deliver what is left, then go
        self._stop = asyncio.Event()  # close_timeout passed: stop delivering
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt")
        self._task.add_done_callback(_log_crash)

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if not self._waiting():
            self._progress_at = time.monotonic()  # messages wait from now on
        if kind in QUEUED_TOPICS:
            self._spool([Item(0, self.prefix + QUEUED_TOPICS[kind], dumps(event), 1)])
        elif kind in self.live_topics and self.connected:
            self._live.append(Item(0, self.prefix + self.live_topics[kind], dumps(event), 0))
        else:
            return
        self._wakeup.set()

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        return {
            "connected": int(self.connected),
            "outbox_depth": len(self._outbox) if self._outbox is not None else 0,  # rows in the file
            "outbox_dropped": self._outbox.dropped if self._outbox is not None else 0,
            "outbox_writable": int(self._outbox_error is None),
            "outbox_unwritten": self.outbox_unwritten,  # messages the outbox could not take as they came: held
            "held": len(self._held),
            "held_dropped": self.held_dropped,
            "published": self.published,
            "reconnects": self.reconnects,
        }

    @hookimpl
    def netgpt_health(self) -> str | None:
        task = self._task
        if task is not None and task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            return f"delivery ended: {type(exc).__name__}: {exc}"
        waiting = self._waiting()
        quiet = time.monotonic() - self._progress_at
        if self.connected and waiting and quiet > self.stall_after:
            return f"connected to {self.broker} with {waiting} messages waiting, none acknowledged for {quiet:.0f} s"
        return None

    def _waiting(self) -> int:
        return (self._outbox.undelivered if self._outbox is not None else 0) + len(self._held) + len(self._live)

    # -- the outbox, or memory while it cannot be written ---------------------------

    def _spool(self, items: list[Item]) -> None:
        """Into the outbox, after what memory holds (so the order holds); into memory while it cannot be written."""
        if self._outbox_error is not None and time.monotonic() < self._outbox_retry_at:
            self._hold(items)
            return
        try:
            if self._outbox is None:
                self._outbox = Outbox(self._outbox_file, self.outbox_max)
            self._outbox.extend((i.topic, i.payload, i.qos) for i in (*self._held, *items))
        except OutboxError as exc:
            self._hold(items)
            self._outbox_failed(str(exc))
            return
        self._held.clear()
        if self._outbox_error is not None:
            self._outbox_error = None
            log.info("mqtt_outbox_writable", path=str(self._outbox_file), unwritten=self.outbox_unwritten,
                     held_dropped=self.held_dropped)  # fmt: skip

    def _hold(self, items: list[Item]) -> None:
        self.outbox_unwritten += len(items)
        self._held.extend(items)
        self._trim_held()

    def _trim_held(self) -> None:
        while len(self._held) > self.outbox_max:
            self._held.popleft()
            self.held_dropped += 1

    def _outbox_failed(self, error: str) -> None:
        self._outbox_retry_at = time.monotonic() + OUTBOX_RETRY
        if self._outbox_error is None:
            self._outbox_error = error
            log.warning("mqtt_outbox_unwritable", path=str(self._outbox_file), error=error,
                        detail="messages are held in memory (outbox_max at most) and still published")  # fmt: skip

    def _ack(self, row_id: int) -> None:
        assert self._outbox is not None
        try:
            self._outbox.ack(row_id)
        except OutboxError as exc:
            self._outbox_failed(str(exc))
            return
        if self._outbox_error is not None:  # the disk takes writes again: what memory holds goes to the outbox
            self._outbox_retry_at = 0.0
            self._spool([])

    @hookimpl
    def netgpt_close(self) -> Awaitable[None]:
        return self._close()

    async def _close(self) -> None:
        """Deliver what is queued for up to close_timeout, say offline and disconnect; the rest stays on disk."""
        if self._task is None:
            return
        self._closing.set()
        self._wakeup.set()
        done, _ = await asyncio.wait({self._task}, timeout=self.link.close_timeout)
        if not done:
            self._stop.set()
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_GRACE)
        if not done:  # stuck connecting to an unresponsive broker
            self._task.cancel()
            await asyncio.wait({self._task})
        if self._held:  # a last try to keep them
            self._outbox_retry_at = 0.0
            self._spool([])
        lost = len(self._held)
        if self._outbox is not None:
            self._outbox.close()
        left = len(self._outbox) if self._outbox is not None else 0
        (log.warning if left or lost else log.info)("mqtt_closed", broker=self.broker, outbox_depth=left,
                                                    held_lost=lost)  # fmt: skip

    async def _run(self) -> None:
        """Connect, deliver, and reconnect with backoff until closed."""
        while True:
            try:
                async with self._new_client() as client:
                    await self._session(client)
                return
            except aiomqtt.MqttError as exc:
                self.connected = False
                if self._closing.is_set():
                    return
                retry_in = self._backoff(exc)
            try:
                await asyncio.wait_for(self._closing.wait(), retry_in)  # closing tries once more at once
            except asyncio.TimeoutError:
                pass

    def _new_client(self) -> aiomqtt.Client:
        return self.link.client(self.client_id, clean_session=False,
                                will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True))  # fmt: skip

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: online, deliver until closing, offline (MqttError if it drops)."""
        await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self._on_online()
        try:
            await self._pump(client)
        finally:
            self.connected = False
            self._live.clear()
        await client.publish(self.status_topic, OFFLINE, qos=1, retain=True)

    def _on_online(self) -> None:
        self.connected = True
        if self._connects:
            self.reconnects += 1
        self._connects += 1
        self._delay = self.link.backoff_initial
        self._outage_logged = False
        self._progress_at = time.monotonic()
        log.info("mqtt_connected", broker=self.broker, client_id=self.client_id,
                 outbox_depth=len(self._outbox) if self._outbox is not None else 0, held=len(self._held))  # fmt: skip

    def _backoff(self, exc: BaseException) -> float:
        """Seconds to wait before the next attempt (jittered, doubling up to backoff_max); logs the first failure."""
        retry_in = round(random.uniform(self._delay / 2, self._delay), 2)
        self._delay = min(self._delay * 2, self.link.backoff_max)
        # One warning per outage; the attempts that follow are debug lines.
        report = log.debug if self._outage_logged else log.warning
        self._outage_logged = True
        report("mqtt_disconnected", broker=self.broker, error=_describe(exc), retry_in=retry_in)
        return retry_in

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Deliver until closing leaves nothing to send or the close deadline passes; raises when the link drops."""
        tasks = [
            asyncio.create_task(self._deliver(client)),
            asyncio.create_task(_until_disconnected(client)),
            asyncio.create_task(self._stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _deliver(self, client: aiomqtt.Client) -> None:
        """The outbox oldest first, then what memory holds, then the live messages, INFLIGHT at a time."""
        while True:
            self._wakeup.clear()
            batch = self._outbox.peek(INFLIGHT) if self._outbox is not None else []
            held = [self._held.popleft() for _ in range(min(len(self._held), INFLIGHT - len(batch)))]
            batch += held
            batch += [self._live.popleft() for _ in range(min(len(self._live), INFLIGHT - len(batch)))]
            if batch:
                try:
                    await asyncio.gather(*(self._send(client, item, held) for item in batch))
                finally:  # the link dropped: what memory held and was not acknowledged goes back, in front
                    self._held.extendleft(reversed(held))
                    self._trim_held()
            elif self._closing.is_set():
                return
            else:
                await self._wakeup.wait()

    async def _send(self, client: aiomqtt.Client, item: Item, held: list[Item]) -> None:
        """Publish one message; on its acknowledgement, remove it from the outbox (or from ``held``)."""
        await client.publish(item.topic, item.payload, qos=item.qos)  # at QoS 1, returns on PUBACK
        self.published += 1
        self._progress_at = time.monotonic()
        if item.row_id:
            self._ack(item.row_id)
        elif item.qos:
            held.remove(item)


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Raise MqttError once the connection drops (nothing is subscribed, so no message comes)."""
    async for _ in client.messages:
        pass


def _describe(exc: BaseException) -> str:
    """The innermost cause's message, one line: aiomqtt wraps the telling part, and
    its code errors print only the code ("[code:128] Unspecified error" for a
    lost connection), so their own message goes first."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.args:
        text = f"{str(exc.args[0]).lower()} ({text})"
    return text


def _log_crash(task: asyncio.Task[None]) -> None:
    """A bug (not a broker problem, those are retried) ends the task: say so when it happens."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("mqtt_failed", error=f"{type(exc).__name__}: {exc}")


def _scheme_host_port(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _parse_url(url: str) -> tuple[bool, str, int, str, str]:
    """(tls, host, port, user, password) of an mqtt:// or mqtts:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        given = f"{parts.scheme}://" if parts.scheme else "none"
        raise ValueError(f"url: the scheme must be mqtt:// or mqtts://, not {given}")
    tls, default_port = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"url: bad port in {_scheme_host_port(url)}") from None
    if not parts.hostname:
        raise ValueError(f"url: no host in {_scheme_host_port(url)}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"url: takes no path or query ({_scheme_host_port(url)}{parts.path}...)")
    return tls, parts.hostname, port, unquote(parts.username or ""), unquote(parts.password or "")


def _one_of(name: str, **sources: str) -> str:
    """The one source that gives ``name``, or ''; two are ambiguous."""
    given = [source for source, value in sources.items() if value]
    if len(given) > 1:
        raise ValueError(f"{name}: given more than once ({' and '.join(given)})")
    return sources[given[0]] if given else ""


def _read_password(path: str) -> str:
    with open(readable("password_file", path), encoding="utf-8") as stream:
        password = stream.read().rstrip("\r\n")
    if not password:
        raise ValueError(f"password_file: {path} is empty")
    return password


def _tls_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server verified against ca_file (or the system CAs); a client certificate if cert_file is set."""
    if key_file and not cert_file:
        raise ValueError("key_file: given without cert_file")
    try:
        context = ssl.create_default_context(cafile=readable("ca_file", ca_file) if ca_file else None)
    except ssl.SSLError as exc:
        raise ValueError(f"ca_file: {ca_file} holds no usable CA certificate ({exc.reason})") from None
    if cert_file:
        try:
            key = readable("key_file", key_file) if key_file else None
            context.load_cert_chain(readable("cert_file", cert_file), key)
        except ssl.SSLError as exc:
            raise ValueError(f"cert_file: {cert_file} with {key or 'its key'} does not load ({exc.reason})") from None
    return context


def _check_topic(setting: str, topic: str) -> None:
    problem = topic_problem(topic)
    if problem:
        raise ValueError(f"{setting}: {problem}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name}: must be positive, got {value}")
