"""Intents: each closed traffic window, the edge LLM proposes network intents, as ``intent`` events.

Flow and alert events are counted into fixed windows of ``window_s``
seconds (its own :class:`netgptd.trend.windows.EventWindows`: time comes
from the events, so a replay gives the windows a live capture would), and
each window keeps its alerts. When a window closes, the shipped intent model
(``model_dir``) reads the
window's summary and its alerts (:func:`netgptd.intent.intents_from_window`:
closed-set tokens only, so no string from traffic can steer it or reach its
output; the alerts are also cut down here to the category and the two
addresses before they are kept) and proposes intents, completed with the
site profile (``profile``, a TOML file; default: a profile of ``[sensor]``'s
site, location and role). Intents below ``min_confidence`` are dropped; an
intent equal (action, target, window) to one emitted less than ``hold_s``
seconds before, in event time, is suppressed (:class:`IntentDeduper`); each
is validated against the schema once more before it leaves, and one that
does not validate is counted (``rejected``) and never emitted.

Event, one per intent::

    {"timestamp": <window end>, "event_type": "intent",
     "intent": {"action": ..., "target": {...}, "reason": ..., "confidence": ..., "source": "observed"}}

Not blocking the loop: one window costs the model about 15 ms at the median
and 40 ms at the 95th percentile (constrained decoding of a 4-layer GPT-2,
one CPU thread; loading it takes seconds), so every window runs in a
one-thread executor and its events are emitted by the loop in window order
(:mod:`netgptd_plugins._offload`, as the trends plugin does). Without
``SensorContext.emit`` or a running loop, they are returned by the next flow
or stats event instead. At most ``MAX_PENDING`` windows wait for the model;
a window closing beyond that is counted (``windows_skipped``), not read. A
window that saw nothing is not read either. The model is loaded at start (in
the executor), so a changed model takes effect on reload, when the host
restarts this plugin; a model that cannot be loaded is logged and counted,
and the windows are then counted only. The window open at close, and windows
still waiting for the model, are dropped (the other plugins are closing).

Quiet periods: as in the trends plugin, a stats event (wall-clock time)
closes windows only when its time is at most ``max(300 s, 5 windows)``
ahead of the last event time, so a replayed capture's windows close by its
own traffic only.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from netgptd.eve import timestamp_at
from netgptd.intent import IntentDeduper, SchemaError, SiteProfile, load_profile, validate
from netgptd.llm.runtime import one_thread
from netgptd.plugin_host import SensorContext, hookimpl
from netgptd.trend.windows import EventWindows, Window, event_time
from netgptd_plugins._offload import OrderedOffload

log = structlog.get_logger(__name__)

MAX_PENDING = 8  # windows waiting for the model, at most: beyond, a window is counted but not read
MAX_ALERTS = 10_000  # alerts kept per window: beyond, counted (alerts_dropped) but not read
MAX_ADDRESS = 45  # characters of an IPv6 address written out in full
VOCAB_FILE = "intent_vocab.json"


def load_intent_model(model_dir: str | None = None) -> Any:
    """An :class:`netgptd.intent.engine.EdgeLLM` (the shipped model if no ``model_dir``), freshly loaded
    (a reload picks up a changed model); ``load_causal_lm`` makes concurrent loads wait for each other."""
    from netgptd.intent.engine import EdgeLLM

    return EdgeLLM.load(model_dir)


def slim_alert(event: dict[str, Any]) -> dict[str, Any]:
    """What the window summary reads of an alert: its category and its two addresses (strings, short), nothing else."""
    meta = event.get("alert")
    category = meta.get("category") if isinstance(meta, dict) else None
    out: dict[str, Any] = {"event_type": "alert", "alert": {"category": category if isinstance(category, str) else None}}
    for key in ("src_ip", "dest_ip"):
        value = event.get(key)
        if isinstance(value, str) and len(value) <= MAX_ADDRESS:
            out[key] = value
    return out


def sensor_profile(sensor: SensorContext) -> SiteProfile:
    """The site profile when none is configured: ``[sensor]``'s site (made fit for an intent's target), location, role."""
    site = re.sub(r"[^A-Za-z0-9._-]", "-", str(sensor.site or ""))[:64].lstrip("._-") or "site"
    return SiteProfile(site=site, location=str(sensor.location or ""), role=str(sensor.role or ""))


@dataclass
class _Job:
    """One closed window read by the model (in the executor); results handed on in the loop thread."""

    window: Window
    alerts: list[dict[str, Any]]
    intents: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    unread: bool = False  # no model: the window is counted only


class IntentsPlugin:
    """Observed intents from closed windows and their alerts; see the module docstring.

    Settings: ``window_s`` seconds per window; ``hold_s`` seconds within which
    an equal intent is suppressed; ``profile`` a site-profile TOML file (empty:
    one from ``[sensor]``); ``model_dir`` an intent model folder (empty: the
    shipped one); ``min_confidence`` the least confidence of an intent emitted.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        hold_s: float = 600.0,
        profile: str = "",
        model_dir: str = "",
        min_confidence: float = 0.5,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s: must be positive, got {window_s}")
        if not (math.isfinite(hold_s) and hold_s >= 0):
            raise ValueError(f"hold_s: must be 0 or more, got {hold_s}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence: must be between 0 and 1, got {min_confidence}")
        if model_dir and not (Path(model_dir) / VOCAB_FILE).is_file():
            raise ValueError(f"model_dir: {model_dir} is not an intent model folder (no {VOCAB_FILE})")
        try:
            self.profile: SiteProfile | None = load_profile(profile) if profile else None  # None: from [sensor]
        except ValueError as exc:  # ProfileError: names the file and the entry
            raise ValueError(f"profile: {exc}") from None
        self.window_s, self.hold_s, self.min_confidence = float(window_s), float(hold_s), float(min_confidence)
        self.model_dir = model_dir or None

        self._windows: EventWindows | None = None
        self.deduper = IntentDeduper(self.hold_s)
        self._alerts: list[dict[str, Any]] = []  # of the open window
        self._offload = OrderedOffload("intents", self._collect, self._job_failed)
        # Touched only in the executor's thread (jobs run one at a time).
        self._llm: Any = None
        self._llm_error = ""
        self.model_state = "not loaded"  # loading, ready, error: written in the executor, read for status
        # Counters for netgpt_status (loop thread).
        self.windows = self.windows_read = self.windows_skipped = self.intents = 0
        self.suppressed = self.rejected = self.below_confidence = self.errors = self.alerts_dropped = 0
        self.seconds = 0.0

    # -- hooks --------------------------------------------------------------------

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self.profile = self.profile or sensor_profile(sensor)
        self._windows = EventWindows(sensor.site, sensor.sensor, self.window_s)
        self._offload.start(sensor)  # without emit or a loop, intents come back through netgpt_event
        self.model_state = "loading"
        self._offload.submit(self._load)  # before any window: the model is ready when the first one closes
        log.info("intents_started", window_s=self.window_s, hold_s=self.hold_s, site=self.profile.site,
                 model=self.model_dir or "shipped", emit=self._offload.emits)  # fmt: skip

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        if self._windows is None:  # not started (or closed)
            return None
        kind = event.get("event_type")
        raised = self._offload.riding_on(kind)
        slim = None
        if kind == "alert":  # what is read of it (a plugin's alert may be malformed): category, addresses
            slim = slim_alert(event)
            event = {"timestamp": event.get("timestamp"), **slim}
        closed = self._windows.feed(event)
        if closed:
            alerts, self._alerts = self._alerts, []
            for window in closed:  # the first is the window that was open: the alerts kept are its
                self._closed(window, alerts)
                alerts = []
        if slim is not None and event_time(event) is not None:  # counted in the open window: kept with it
            if len(self._alerts) < MAX_ALERTS:
                self._alerts.append(slim)
            else:
                self.alerts_dropped += 1
        return raised or None

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "windows_read": self.windows_read,
            "windows_skipped": self.windows_skipped,
            "intents": self.intents,
            "suppressed": self.suppressed,
            "rejected": self.rejected,
            "below_confidence": self.below_confidence,
            "errors": self.errors,
            "alerts_dropped": self.alerts_dropped,
            "pending": len(self._offload.pending),
            "seconds": round(self.seconds, 6),
            "model": self.model_state,
        }

    @hookimpl
    def netgpt_close(self) -> None:
        if self._windows is None:
            return
        self._windows = None
        self._alerts = []
        lost = self._offload.close()  # a window being read finishes in its thread; its intents have nowhere to go
        if lost:
            log.info("intents_windows_dropped_at_close", windows=lost)

    # -- windows (loop thread) ------------------------------------------------------

    def _closed(self, window: Window, alerts: list[dict[str, Any]]) -> None:
        self.windows += 1
        if window.is_empty():
            return
        if self._offload.running >= MAX_PENDING:
            self.windows_skipped += 1
            if self.windows_skipped % 100 == 1:  # the first, then every 100th (a fast replay skips many)
                log.warning("intents_windows_skipped", skipped=self.windows_skipped, window_start=window.start)
            return
        self._offload.submit(self._read, _Job(window, alerts))

    # -- the model (executor thread) --------------------------------------------------

    def _load(self) -> list[dict[str, Any]]:
        """Load the model; a failure is logged, and windows are then counted only."""
        began = time.perf_counter()
        try:
            self._llm = load_intent_model(self.model_dir)
        except Exception as exc:  # noqa: BLE001 -- LLMError, or torch/transformers missing: the daemon goes on
            self._llm_error = f"{type(exc).__name__}: {exc}"
            self.model_state = "error"
            if self._windows is None:  # closed while loading (the interpreter may be exiting): no matter
                return []
            log.error("intents_model_unavailable", model=self.model_dir or "shipped", error=self._llm_error)
            return []
        self.model_state = "ready"
        log.info("intents_model_loaded", seconds=round(time.perf_counter() - began, 3))
        return []

    def _read(self, job: _Job) -> _Job:
        if self._llm is None:
            job.unread = True
            return job
        from netgptd.intent.engine import intents_from_window

        began = time.perf_counter()
        try:
            with one_thread():
                job.intents = intents_from_window(job.window, job.alerts, self.profile, self._llm)
        except Exception as exc:  # noqa: BLE001 -- counted; the next window is read as usual
            job.error = f"{type(exc).__name__}: {exc}"
        job.seconds = time.perf_counter() - began
        return job

    # -- results (loop thread, in window order) -------------------------------------------

    def _collect(self, job: _Job) -> list[dict[str, Any]]:
        if job.unread:
            return []  # no model: counted as a window only (logged once, at load)
        self.windows_read += 1
        self.seconds += job.seconds
        if job.error:
            self.errors += 1
            log.warning("intents_window_failed", window_start=job.window.start, error=job.error)
            return []
        now = job.window.end
        events = []
        for intent in job.intents:
            try:
                validate(intent)
            except SchemaError as exc:
                self.rejected += 1
                log.warning("intent_rejected", error=str(exc)[:300], window_start=job.window.start)
                continue
            if intent["confidence"] < self.min_confidence:
                self.below_confidence += 1
            elif not self.deduper.admit(intent, now):
                self.suppressed += 1
            else:
                events.append({"timestamp": timestamp_at(now), "event_type": "intent", "intent": intent})
        self.intents += len(events)
        log.debug("intents_window", window_start=job.window.start, seconds=round(job.seconds, 4),
                  proposed=len(job.intents), emitted=len(events))  # fmt: skip
        return events

    def _job_failed(self, exc: BaseException) -> None:
        """A job that raised (_read catches, so this is a bug): counted and logged."""
        self.errors += 1
        log.error("intents_job_failed", error=f"{type(exc).__name__}: {exc}")
