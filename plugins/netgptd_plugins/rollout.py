"""Model rollout: serve the bundle the central side announces, once its signature and hash check out.

The plugin subscribes to ``topic`` (default ``netgpt/{site}/_models/current``,
where ``netgptd model publish`` puts a retained announcement, see
:mod:`netgptd.model.announce`). For an announcement of an archive it does
not serve yet it checks the Ed25519 signature with ``public_key``, fetches
the archive (``netgptd.model.archive``: at most ``max_bytes``, within
``fetch_timeout`` seconds), checks its sha256, unpacks it under
``<state_dir>/models/<sha256>`` and checks the bundle against its own
manifest; then the service serves it from the next batch on (flows
tracked or waiting for the model stay; ``SensorContext.serve_model``).
Whatever fails, the running model stays: the refusal is logged
(``model_refused``, with the reason and the error), counted by reason
(``netgpt_rollout_refused_total``) and reported.

The report, retained at QoS 1 on ``<topic_prefix>model``: ``serving``
(name, version and archive sha256 of the model served; sha256 is null for
the configured bundle) and ``refused`` (the last announcement refused,
with its reason and error; null if none), so the central side sees which
version every sensor serves. After a restart the retained announcement
comes again and the unpacked bundle is served from the state folder.

MQTT settings as the mqtt plugin's (``url``, ``topic_prefix``, credentials,
TLS files, ``client_id`` default ``netgptd-<site>-<sensor>-rollout``,
``keepalive``, ``backoff_initial``/``backoff_max``).
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import aiomqtt
import structlog

from netgptd.eve import dumps
from netgptd.model.announce import REFUSED, check_key, problem, verify
from netgptd.model.archive import MAX_BYTES, ArchiveError, fetch, unpack
from netgptd.model.bundle import Bundle, BundleError
from netgptd.plugin_host import SensorContext, hookimpl
from netgptd_plugins.mqtt import Link, _check_positive, _check_topic, _describe

log = structlog.get_logger(__name__)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("rollout_failed", error=f"{type(exc).__name__}: {exc}")


class Refused(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.error = reason, error


class RolloutPlugin:
    def __init__(
        self,
        public_key: str = "",
        topic: str = "netgpt/{site}/_models/current",
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
        fetch_timeout: float = 60.0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        if not public_key:
            raise ValueError("public_key: required (the Ed25519 public key, PEM, that bundle announcements are "
                             "signed with)")  # fmt: skip
        self.public_key = check_key(public_key, public=True)
        self.link = Link.checked(url, topic_prefix, username, password, password_file, ca_file, cert_file, key_file,
                                 keepalive, backoff_initial, backoff_max, 1.0)  # fmt: skip
        _check_positive(fetch_timeout=fetch_timeout, max_bytes=max_bytes)
        self.topic_template, self.client_id = topic, client_id
        self.fetch_timeout, self.max_bytes = fetch_timeout, max_bytes
        self.topic = self.report_topic = ""
        self.models: Path = Path(".")
        self.serving: dict[str, Any] = {}
        self.refused: dict[str, Any] | None = None
        self.counts = {"announcements": 0, "applied": 0, "connected": 0}
        self.refusals = dict.fromkeys(REFUSED, 0)
        self._serve: Callable[[Path], Awaitable[Mapping[str, str]]] | None = None
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self.topic = self.topic_template.format(site=sensor.site, sensor=sensor.sensor)
        _check_topic("topic", self.topic)
        self.report_topic = self.link.topic_prefix.format(site=sensor.site, sensor=sensor.sensor) + "model"
        _check_topic("topic_prefix", self.report_topic)
        self.client_id = self.client_id or f"netgptd-{sensor.site}-{sensor.sensor}-rollout"
        self.models = Path(sensor.state_dir) / "models"
        if not self.serving:  # a reload that restarts this plugin keeps what it rolled out
            self.serving = {"name": sensor.model.get("name", ""), "version": sensor.model.get("version", ""),
                            "sha256": None}  # fmt: skip
        self._serve = sensor.serve_model
        self._changed, self._stop = asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rollout")
        self._task.add_done_callback(_log_crash)

    @hookimpl
    def netgpt_health(self) -> str | None:
        """Dead when its task ended with an error (a broker away is not: it reconnects)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            return f"the rollout task failed: {task.exception()}"
        return None

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        return {**self.counts, "refused": dict(self.refusals), "serving": dict(self.serving)}

    @hookimpl
    async def netgpt_close(self) -> None:
        self._stop.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=2.0)
            if not done:
                self._task.cancel()
                await asyncio.wait({self._task})

    # -- one announcement -----------------------------------------------------------

    async def consider(self, payload: bytes) -> None:
        """Serve the announced bundle, or refuse it (logged, counted, reported); the running model stays."""
        self.counts["announcements"] += 1
        try:
            announcement = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._refuse({}, "malformed", f"not JSON: {exc}")
        if why := problem(announcement):
            return self._refuse(announcement if isinstance(announcement, dict) else {}, "malformed", why)
        if announcement["sha256"] == self.serving.get("sha256"):
            return  # already served (the retained announcement again, after a reconnect)
        if self.refused and self.refused.get("sig") == announcement.get("sig") and "sig" in announcement:
            return  # refused already: not fetched again at each reconnect
        loop = asyncio.get_running_loop()
        try:
            if why := await loop.run_in_executor(None, verify, announcement, self.public_key):
                raise Refused(why, "the signature does not check out with public_key" if why == "bad_signature"
                              else "the announcement is not signed")  # fmt: skip
            bundle = await loop.run_in_executor(None, self._fetched, announcement)
            announced = (announcement["name"], announcement["version"])
            if (bundle.name, bundle.version) != announced:
                raise Refused("bad_bundle", f"the archive holds {bundle.name}@{bundle.version}, announced as "
                                            f"{announced[0]}@{announced[1]}")  # fmt: skip
            assert self._serve is not None
            info = await self._serve(bundle.path)
        except Refused as exc:
            return self._refuse(announcement, exc.reason, exc.error)
        except (ArchiveError, BundleError) as exc:
            return self._refuse(announcement, getattr(exc, "reason", "bad_bundle"), str(exc))
        except OSError as exc:  # the state folder (full, read-only): not the bundle's fault
            return self._refuse(announcement, "install_failed", f"cannot unpack into {self.models}: {exc}")
        self.serving = {"name": info.get("name", ""), "version": info.get("version", ""),
                        "sha256": announcement["sha256"]}  # fmt: skip
        self.counts["applied"] += 1
        log.info("model_served", model=info, sha256=announcement["sha256"], url=announcement["url"])
        self._changed.set()

    def _fetched(self, announcement: Mapping[str, Any]) -> Bundle:
        """The announced archive, fetched, checked and unpacked (a worker thread: it blocks)."""
        data = fetch(announcement["url"], announcement["size"], self.fetch_timeout, self.max_bytes)
        return unpack(data, announcement["sha256"], self.models)

    def _refuse(self, announcement: Mapping[str, Any], reason: str, error: str) -> None:
        self.refusals[reason] += 1
        self.refused = {"version": announcement.get("version"), "sha256": announcement.get("sha256"),
                        "sig": announcement.get("sig"), "reason": reason, "error": error}  # fmt: skip
        log.error("model_refused", reason=reason, error=error, version=announcement.get("version"),
                  serving=self.serving.get("version"), detail="the running model stays")  # fmt: skip
        self._changed.set()

    def report(self) -> bytes:
        refused = {k: v for k, v in self.refused.items() if k != "sig"} if self.refused else None
        return dumps({"serving": self.serving, "refused": refused})

    # -- MQTT -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.link.backoff_initial
        while not self._stop.is_set():
            try:
                async with self.link.client(self.client_id, clean_session=True) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.counts["connected"], delay = 1, self.link.backoff_initial
                    log.info("rollout_connected", broker=str(self.link), topic=self.topic)
                    self._changed.set()  # the report, at every connect
                    await self._session(client)
                return
            except aiomqtt.MqttError as exc:
                self.counts["connected"] = 0
                if self._stop.is_set():
                    return
                retry_in = round(random.uniform(delay / 2, delay), 2)
                delay = min(delay * 2, self.link.backoff_max)
                log.warning("rollout_disconnected", broker=str(self.link), error=_describe(exc), retry_in=retry_in)
            try:
                await asyncio.wait_for(self._stop.wait(), retry_in)
            except asyncio.TimeoutError:
                pass

    async def _session(self, client: aiomqtt.Client) -> None:
        tasks = [asyncio.create_task(self._read(client)), asyncio.create_task(self._report(client)),
                 asyncio.create_task(self._stop.wait())]  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.counts["connected"] = 0
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # MqttError: the link dropped

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            await self.consider(payload)

    async def _report(self, client: aiomqtt.Client) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await client.publish(self.report_topic, self.report(), qos=1, retain=True)
