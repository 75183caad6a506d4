"""Trends: traffic windows, their history, and forecasts of what comes next, as ``trend`` events.

Flow and alert events are counted into fixed windows of ``window_s``
seconds (``netgptd.trend.windows``: time comes from the events, so a replay
gives the windows a live capture would). Each closed window goes to the
SQLite history in the state directory (it survives restarts; a partial
window flushed at shutdown is merged with its continuation), and once
``min_history`` windows are known, one forecast round runs: the total and
the ``top_apps`` largest applications of the recent windows (a bounded set
of series) are each forecast ``horizon`` windows ahead by the forecaster
named in ``netgptd.trend.forecasters.FORECASTERS``. The round's ``trend``
events are what the hook returns, so every other plugin (EVE, MQTT,
Prometheus) gets them.

Event, one per series and closed window::

    {"timestamp": <window end>, "event_type": "trend",
     "trend": {"series": "total" | <app>, "metric": "bytes", "window_s": 60,
               "window_start": ..., "actual": 123456, "forecaster": "holt_winters",
               "forecast": [{"timestamp": <start of the window h ahead>, "value": v}, ...],
               "history": <points the forecast saw>}}

Forecasters: ``auto`` takes edge_llm where registered, else holt_winters,
else seasonal_naive, and moves down that list when one
cannot be made (no model, no torch), with a warning; a forecaster named
explicitly is never replaced (its failures are counted). One with
``predict_many`` (edge_llm) is made once and forecasts a round's series in
one batch, with the site and the origin's time as context; any other is
made and fitted per series. Fits are redone every ``refit_every`` windows
(the season, if not given, detected again then); ``predict`` runs every
window on the last ``context`` windows (at least 96 and 8 seasons).
History across a restart is taken as continuous (the gap is not filled).

Not blocking the loop: hooks run in the pipeline's loop thread. A round
runs inline, and its events are the hook's return value, when its measured
cost (per-series fit and predict times, averaged) is within ``inline_ms``.
Otherwise (and always for a forecaster not yet measured) it runs in a
one-thread executor; when it finishes, its events are handed to
``SensorContext.emit`` in the loop thread (``call_soon_threadsafe``), as
events of their own. Where the host gives no ``emit`` or there is no
running loop (a bare host, tests), they are returned by the next flow or
stats ``netgpt_event`` call instead. Rounds are emitted in window order. At
most ``MAX_PENDING`` rounds wait; a window closing beyond that is stored
but not forecast (``rounds_skipped``). Rounds still running at close are
not emitted (the other plugins are closing too). The executor is a thread:
a forecaster that holds the GIL (Holt-Winters' NumPy loop) still slows the loop
while it runs, a few milliseconds at a time; torch's kernels release it.

Quiet periods: a window closes when an event's time passes its end. On a
live capture with no traffic, the periodic stats event (wall-clock time)
closes windows instead, but only when its time is at most ``stats_close_max``
(5 windows, at least 300 s) ahead of the last event time; a replayed
capture's old times stay far behind the wall clock, so stats never close
its windows.
"""

from __future__ import annotations

import inspect
import math
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import structlog

from netgptd.eve import timestamp_at
from netgptd.llm.runtime import one_thread
from netgptd.plugin_host import SensorContext, hookimpl
from netgptd.trend.forecasters import FORECASTERS, Forecaster
from netgptd.trend.history import WindowHistory
from netgptd.trend.series import detect_season
from netgptd.trend.windows import TRAFFIC_METRICS, EventWindows, Window
from netgptd_plugins._offload import OrderedOffload

log = structlog.get_logger(__name__)

TOTAL = "total"
BATCHED = ""  # key of the one instance of a forecaster with predict_many, in _models
AUTO = "auto"
PREFERRED = ("edge_llm", "holt_winters", "seasonal_naive")  # "auto": the first registered and usable
MAX_SEASON = 288  # longest automatic season (a day of 5-minute windows); longer ones make fits slow
CONTEXT_MIN = 96  # windows kept in memory and given to the forecaster, at least
TOP_LOOKBACK = 60  # windows over which the top applications are ranked, at least (min_history if more)
MAX_PENDING = 8  # rounds not yet run by the executor, at most: beyond, a window is stored but not forecast
COST_SMOOTHING = 0.3  # weight of the latest measurement in the per-series cost averages


def _usable(name: str) -> bool:
    return name in FORECASTERS


def resolve_forecaster(name: str) -> str:
    """The registered forecaster ``name`` stands for (``auto``: edge_llm, else holt_winters, else
    seasonal_naive); ValueError naming the known ones otherwise."""
    if name == AUTO:
        return next(n for n in PREFERRED if _usable(n))
    if name not in FORECASTERS:
        raise ValueError(f"forecaster: unknown {name!r} (known: {AUTO}, {', '.join(sorted(FORECASTERS))})")
    return name


def _number(value: float) -> float | int:
    """Rounded for the event: whole numbers from 100 up, two decimals below."""
    return int(round(value)) if abs(value) >= 100 else round(value, 2)


@dataclass
class _Round:
    """One closed window's forecasts: made in the loop thread, run inline or in the executor."""

    window: Window  # the window just closed (its value as stored, merged with a part from before a restart)
    series: dict[str, np.ndarray]  # series name -> values, oldest first, ending with ``window``
    refit: bool  # refit every series' forecaster (else only new ones)
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0


class TrendsPlugin:
    """Windows, history and forecasts of the sensor's traffic; see the module docstring.

    Settings: ``window_s`` seconds per window; ``horizon`` windows ahead;
    ``top_apps`` applications forecast besides the total; ``metric`` bytes,
    flows or packets; ``forecaster`` a name in the registry or ``auto``;
    ``min_history`` windows before the first forecast; ``history_keep``
    windows kept in the state directory; ``season`` in windows (0: detected
    among an hour and a day of windows, up to 288); ``refit_every`` windows
    between refits of the forecasters; ``inline_ms`` the longest round run
    in the loop thread (0: always in the executor).
    """

    def __init__(
        self,
        window_s: float = 60.0,
        horizon: int = 5,
        top_apps: int = 5,
        metric: str = "bytes",
        forecaster: str = AUTO,
        min_history: int = 12,
        history_keep: int = 10_080,
        season: int = 0,
        refit_every: int = 60,
        inline_ms: float = 50.0,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s: must be positive, got {window_s}")
        if metric not in TRAFFIC_METRICS:
            raise ValueError(f"metric: unknown {metric!r} (use {', '.join(TRAFFIC_METRICS)})")
        for key, value, least in (("horizon", horizon, 1), ("top_apps", top_apps, 0), ("min_history", min_history, 2),
                                  ("season", season, 0), ("refit_every", refit_every, 1)):  # fmt: skip
            if value < least:
                raise ValueError(f"{key}: must be at least {least}, got {value}")
        if history_keep < min_history:
            raise ValueError(f"history_keep: {history_keep} is below min_history {min_history}")
        if inline_ms < 0:
            raise ValueError(f"inline_ms: must not be negative, got {inline_ms}")
        self.requested = forecaster
        self.forecaster = resolve_forecaster(forecaster)  # auto may move down PREFERRED if one cannot be made
        self.window_s, self.horizon, self.top_apps, self.metric = float(window_s), horizon, top_apps, metric
        self.min_history, self.history_keep, self.refit_every = min_history, history_keep, refit_every
        self.inline_s = inline_ms / 1000
        self.season = season  # 0: detected among self.seasons
        self.seasons = [season] if season else self._season_candidates()
        self.context = min(history_keep, max(min_history, CONTEXT_MIN, *(8 * s for s in self.seasons)))

        self.history: WindowHistory | None = None
        self._windows: EventWindows | None = None
        self.site, self.sensor = "default", "sensor"
        self._recent: deque[Window] = deque(maxlen=self.context)
        # The executor's rounds, emitted in window order (_offload); _pending: its queue, in window order.
        self._offload = OrderedOffload("trends", self._account, self._round_failed)
        self._pending = self._offload.pending
        # Touched only by a running round (one at a time: inline only while none is pending).
        self._models: dict[str, Forecaster] = {}
        self._season = 1
        self._since_fit = 0  # windows since the last refit
        self._fit_cost: float | None = None  # seconds per series fit, smoothed (None: not measured yet)
        self._predict_cost: float | None = None
        # Counters for netgpt_status.
        self.windows = self.forecasts = self.forecast_errors = self.rounds_skipped = self.rounds_async = 0
        self.history_unwritten = 0  # closed windows the history could not store (a full disk)
        self._history_writable = True
        self.forecast_seconds = 0.0

    def _season_candidates(self) -> list[int]:
        """An hour and a day, in windows, where whole, at least 4 and at most MAX_SEASON."""
        out = []
        for period in (3600.0, 86400.0):
            steps = period / self.window_s
            if steps == int(steps) and 4 <= steps <= MAX_SEASON:
                out.append(int(steps))
        return out

    # -- hooks --------------------------------------------------------------------

    @hookimpl
    def netgpt_start(self, sensor: SensorContext) -> None:
        self.site, self.sensor = sensor.site, sensor.sensor
        self.history = WindowHistory(sensor.state_dir, keep=self.history_keep)
        self._windows = EventWindows(sensor.site, sensor.sensor, self.window_s)
        self._load_recent()
        self._offload.start(sensor)  # without emit or a loop, rounds come back through netgpt_event
        log.info("trends_started", forecaster=self.forecaster, window_s=self.window_s, metric=self.metric,
                 history=len(self._recent), seasons=self.seasons, emit=self._offload.emits)  # fmt: skip

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        if self._windows is None:  # not started (or closed)
            return None
        kind = event.get("event_type")
        raised = self._offload.riding_on(kind)
        closed = self._windows.feed(event)
        queued = len(self._pending)
        for window in closed:
            raised += self._closed(window)
        if raised and kind == "alert" and self._offload.emits:
            # An alert may be one a plugin raised, and what is raised in answer to that is not
            # passed on: these go out through emit once this alert has gone round, queued as a
            # finished round so that later rounds keep their order.
            self._offload.later(raised, queued)  # inline rounds run before any this call queued
            return None
        return raised or None

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "forecasts": self.forecasts,
            "forecast_seconds_total": round(self.forecast_seconds, 6),
            "forecast_errors": self.forecast_errors,
            "rounds_async": self.rounds_async,
            "rounds_pending": len(self._pending),  # run or not, their events not yet handed on
            "rounds_skipped": self.rounds_skipped,
            "history_unwritten": self.history_unwritten,
            "forecaster": self.forecaster,
        }

    @hookimpl
    def netgpt_close(self) -> None:
        """Store the open window (merged with its continuation after a restart); drop pending rounds."""
        if self._windows is None or self.history is None:
            return
        for window in self._windows.flush():
            self._store(window)
        self._windows = None
        # A round already running finishes in its thread; its events have nowhere to go.
        lost = self._offload.close()
        if lost:
            log.info("trends_rounds_dropped_at_close", rounds=lost)
        self.history.close()
        self.history = None

    # -- windows ------------------------------------------------------------------

    def _load_recent(self) -> None:
        assert self.history is not None
        stored = self.history.windows(self.site, self.sensor, last_n=self.context)
        self._recent.clear()
        self._recent.extend(w for w in stored if w.width == self.window_s)

    def _store(self, window: Window) -> bool:
        """Append to the history and the in-memory tail; False if it cannot be stored."""
        assert self.history is not None
        try:
            self.history.append(window)
        except ValueError as exc:  # a stored window of another width at this start (window_s changed)
            log.warning("trend_window_not_stored", start=window.start, error=str(exc))
            return False
        except sqlite3.Error as exc:  # a full or read-only disk: forecasts go on from the windows in memory
            self.history_unwritten += 1
            if self._history_writable:
                log.warning("trend_history_unwritable", error=str(exc), detail="forecasting from the windows in memory")
                self._history_writable = False
            if self._recent and window.start <= self._recent[-1].start:
                return False  # a continuation: its stored part cannot be merged now
            self._recent.append(window)
            return True
        if not self._history_writable:
            log.info("trend_history_writable", unwritten=self.history_unwritten)
            self._history_writable = True
        if self._recent and window.start <= self._recent[-1].start:
            self._load_recent()  # a continuation (merged in the history) or an older window: reread
        else:
            self._recent.append(window)
        return True

    def _closed(self, window: Window) -> list[dict[str, Any]]:
        """Store a closed window and forecast from it (events now, or later from the executor)."""
        if not self._store(window):
            return []
        self.windows += 1
        self._since_fit += 1
        if len(self._recent) < self.min_history or self._recent[-1].start != window.start:
            return []
        job = self._round()
        if self._pending or not self._cheap(job):  # after rounds not yet emitted: in order, so in the executor
            if self._offload.running >= MAX_PENDING:
                self.rounds_skipped += 1
                if job.refit:
                    self._since_fit = self.refit_every  # the next round refits instead
                if self.rounds_skipped % 100 == 1:  # the first, then every 100th (a fast replay skips many)
                    log.warning("trend_rounds_skipped", skipped=self.rounds_skipped, forecaster=self.forecaster,
                                window_start=window.start)  # fmt: skip
                return []
            self.rounds_async += 1
            self._offload.submit(self._run, job)
            return []
        return self._account(self._run(job))

    def _round(self) -> _Round:
        """The series to forecast: the total and the top applications of the recent windows."""
        windows = list(self._recent)
        ranked: dict[str, float] = {}
        for w in windows[-max(TOP_LOOKBACK, self.min_history):]:
            for app, traffic in w.apps.items():
                ranked[app] = ranked.get(app, 0.0) + getattr(traffic, self.metric)
        apps = sorted((a for a, v in ranked.items() if v > 0 and a != TOTAL), key=lambda a: (-ranked[a], a))
        series = {TOTAL: np.array([w.value(self.metric) for w in windows], dtype=np.float64)}
        for app in apps[: self.top_apps]:
            series[app] = np.array([w.value(self.metric, f"app:{app}") for w in windows], dtype=np.float64)
        refit = self._since_fit >= self.refit_every
        if refit:
            self._since_fit = 0
        return _Round(window=windows[-1], series=series, refit=refit)

    def _cheap(self, job: _Round) -> bool:
        """Whether the round's estimated cost (from measured per-series times) fits ``inline_ms``."""
        if BATCHED in self._models:
            fits = int(job.refit)
        else:
            fits = len(job.series) if job.refit else sum(name not in self._models for name in job.series)
        if (fits and self._fit_cost is None) or self._predict_cost is None:
            return False
        return fits * (self._fit_cost or 0.0) + len(job.series) * self._predict_cost <= self.inline_s

    # -- forecasting (inline, or in the executor's thread) --------------------------

    def _run(self, job: _Round) -> _Round:
        started = time.perf_counter()
        if job.refit or not self._models:
            season = self._detect_season(job.series[TOTAL])
            if season != self._season or job.refit:
                self._models.clear()
                self._season = season
        for name, result in self._forecast_round(job.series, job.window).items():
            if isinstance(result, Exception):
                job.errors += 1
                log.warning("trend_forecast_failed", series=name, forecaster=self.forecaster,
                            error=f"{type(result).__name__}: {result}")  # fmt: skip
            else:
                job.events.append(self._event(job.window, name, len(job.series[name]), result))
        job.seconds = time.perf_counter() - started
        return job

    def _detect_season(self, total: np.ndarray) -> int:
        if self.season:
            return self.season
        return detect_season(total, tuple(self.seasons)) if self.seasons else 1

    def _forecast_round(self, series: dict[str, np.ndarray], window: Window) -> dict[str, np.ndarray | Exception]:
        """Each series' forecast, or the exception that stopped it (counted; the others go on).

        A forecaster with ``predict_many`` (edge_llm) is made once and forecasts
        every series in one batch; any other is made and fitted per series.
        """
        if not self._models:  # nothing made yet (or refit): see what the forecaster is
            try:
                model = self._make(series[TOTAL])
            except Exception as exc:  # noqa: BLE001 -- e.g. a model or library that is not installed
                if self._fall_back(exc):
                    return self._forecast_round(series, window)
                return {name: exc for name in series}
            self._models[BATCHED if hasattr(model, "predict_many") else TOTAL] = model
        batched = self._models.get(BATCHED)
        if batched is not None:
            return self._forecast_batch(batched, series, window)
        for name in [n for n in self._models if n not in series]:
            del self._models[name]  # an application no longer among the top ones
        out: dict[str, np.ndarray | Exception] = {}
        for name, values in series.items():
            try:
                model = self._models.get(name)
                if model is None:
                    model = self._models[name] = self._make(values)
                begun = time.perf_counter()
                out[name] = self._checked(model.predict(values, self.horizon))
                self._predict_cost = self._smooth(self._predict_cost, time.perf_counter() - begun)
            except Exception as exc:  # noqa: BLE001 -- a forecaster's failure is counted, the others go on
                self._models.pop(name, None)
                out[name] = exc
        return out

    def _forecast_batch(self, model: Any, series: dict[str, np.ndarray], window: Window) -> dict[str, Any]:
        names = list(series)
        begun = time.perf_counter()
        try:
            kwargs = {}
            if "contexts" in inspect.signature(model.predict_many).parameters:
                kwargs["contexts"] = [self._prompt_context(window)] * len(names)
            with one_thread():  # the LM beside the pipeline: one core, as measured
                forecasts = model.predict_many([series[n] for n in names], self.horizon, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- counted for every series of the batch
            return {name: exc for name in names}
        self._predict_cost = self._smooth(self._predict_cost, (time.perf_counter() - begun) / len(names))
        out: dict[str, Any] = {}
        for name, forecast in zip(names, forecasts):
            try:
                out[name] = self._checked(forecast)
            except ValueError as exc:
                out[name] = exc
        return out

    def _prompt_context(self, window: Window) -> Any:
        """Where and when, for a forecaster that takes them (edge_llm): the site, and the origin
        (the end of the window just closed) as an aware UTC time the forecaster may convert."""
        from netgptd.trend.llm import PromptContext

        return PromptContext(site=self.site, when=datetime.fromtimestamp(window.end, timezone.utc))

    def _make(self, values: np.ndarray) -> Forecaster:
        begun = time.perf_counter()
        model = FORECASTERS[self.forecaster](self._season)
        model.fit(values)
        self._fit_cost = self._smooth(self._fit_cost, time.perf_counter() - begun)
        return model

    def _fall_back(self, exc: Exception) -> bool:
        """With ``auto``, when the forecaster cannot be made: take the next one (True)."""
        if self.requested != AUTO:
            return False
        later = [n for n in PREFERRED[PREFERRED.index(self.forecaster) + 1:] if _usable(n)]
        if not later:
            return False
        log.warning("trend_forecaster_unavailable", forecaster=self.forecaster, instead=later[0],
                    error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        self.forecaster, self._fit_cost, self._predict_cost = later[0], None, None
        return True

    def _checked(self, forecast: Any) -> np.ndarray:
        forecast = np.asarray(forecast, dtype=np.float64)
        if forecast.shape != (self.horizon,) or not np.all(np.isfinite(forecast)):
            raise ValueError(f"forecast of shape {forecast.shape} (expected ({self.horizon},), finite)")
        return forecast

    @staticmethod
    def _smooth(average: float | None, sample: float) -> float:
        return sample if average is None else (1 - COST_SMOOTHING) * average + COST_SMOOTHING * sample

    def _event(self, window: Window, series: str, points: int, forecast: np.ndarray) -> dict[str, Any]:
        width = int(self.window_s) if self.window_s == int(self.window_s) else self.window_s
        actual = window.value(self.metric, None if series == TOTAL else f"app:{series}")
        return {
            "timestamp": timestamp_at(window.end),
            "event_type": "trend",
            "trend": {
                "series": series,
                "metric": self.metric,
                "window_s": width,
                "window_start": timestamp_at(window.start),
                "actual": int(actual),  # counts: whole numbers
                "forecaster": self.forecaster,
                "forecast": [{"timestamp": timestamp_at(window.end + h * self.window_s), "value": _number(v)}
                             for h, v in enumerate(forecast)],  # fmt: skip
                "history": points,
            },
        }

    # -- results ------------------------------------------------------------------

    def _account(self, job: _Round) -> list[dict[str, Any]]:
        self.forecasts += len(job.events)
        self.forecast_errors += job.errors
        self.forecast_seconds += job.seconds
        log.debug("trend_round", seconds=round(job.seconds, 4), series=len(job.series), refit=job.refit)
        return job.events

    def _round_failed(self, exc: BaseException) -> None:
        """A round that raised (_run catches per series, so this is a bug): counted and logged."""
        self.forecast_errors += 1
        log.error("trend_round_failed", error=f"{type(exc).__name__}: {exc}")
