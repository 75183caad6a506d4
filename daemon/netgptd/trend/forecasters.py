"""Forecasters: learn from a training history once, then forecast from any later history.

``fit`` sees the training part only; ``predict`` gets everything observed up
to the forecast origin and must not refit parameters, so a rolling-origin
evaluation measures the model, not a model re-tuned at every step.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Protocol

import numpy as np
import structlog

log = structlog.get_logger(__name__)


class Forecaster(Protocol):
    def fit(self, history: np.ndarray) -> None:
        """Learn from the training history (1-D, oldest first)."""

    def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
        """The next ``horizon`` values after ``history`` (float64, length ``horizon``)."""


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last observed season: y[t+h] = y[t+h-m*ceil(h/m)].

    A history shorter than the season repeats the whole history instead.
    """
    if len(history) == 0:
        raise ValueError("cannot forecast from an empty history")
    m = min(season, len(history))
    return history[len(history) - m + np.arange(horizon) % m].astype(np.float64)


class SeasonalNaive:
    """The benchmark every other forecaster is scaled by (``season`` 1 is last-value)."""

    def __init__(self, season: int) -> None:
        self.season = season

    def fit(self, history: np.ndarray) -> None:
        """Nothing to learn."""

    def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
        return seasonal_naive_forecast(history, horizon, self.season)


class HoltWinters:
    """Additive Holt-Winters with a damped trend (statsmodels ``ExponentialSmoothing``).

    ``fit`` estimates the smoothing parameters on the training history.
    ``predict`` reruns the filter with those parameters over the recent
    ``seasons_kept`` seasons of the history (heuristic initial states) and
    forecasts; that keeps a prediction near-constant in cost however long the
    history grows.

    Fallback, never an exception: where the model cannot be fitted (history
    flat or shorter than ``MIN_POINTS``, or statsmodels fails) or cannot run
    (history too short for the seasonal start-up, non-finite output), the
    forecast is seasonal naive. The season is dropped where the training
    history holds fewer than two cycles of it. Forecasts of a non-negative
    history are clipped at 0 (counts and bytes are never negative).
    """

    MIN_POINTS = 10  # statsmodels' heuristic start-up needs 10 observations (plus two seasons if seasonal)

    def __init__(self, season: int, seasons_kept: int = 8) -> None:
        self.season = season
        self.window = max(seasons_kept * season, 96)
        self._params: dict[str, float] | None = None
        self._seasonal = False

    def fit(self, history: np.ndarray) -> None:
        self._params = None
        self._seasonal = self.season > 1 and len(history) >= self._seasonal_minimum()
        if len(history) < self.MIN_POINTS or np.ptp(history) == 0:
            log.warning("holt_winters_fallback", reason="history flat or too short", points=len(history))
            return
        try:
            fitted = self._fit(history, "estimated")
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.warning("holt_winters_fallback", reason=f"fit failed: {exc}", points=len(history))
            return
        names = ["smoothing_level", "smoothing_trend", "damping_trend"] + ["smoothing_seasonal"] * self._seasonal
        params = {name: float(fitted.params[name]) for name in names}
        if not all(np.isfinite(list(params.values()))):
            log.warning("holt_winters_fallback", reason="non-finite parameters", params=params)
            return
        self._params = params
        log.info("holt_winters_fitted", seasonal=self._seasonal, season=self.season, **params)

    def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
        recent = history[-self.window:]
        minimum = self._seasonal_minimum() if self._seasonal else self.MIN_POINTS
        if self._params is None or len(recent) < minimum or np.ptp(recent) == 0:
            return seasonal_naive_forecast(history, horizon, self.season)
        try:
            forecast = np.asarray(self._fit(recent, "heuristic", optimized=False, **self._params).forecast(horizon))
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.debug("holt_winters_predict_fallback", reason=str(exc))
            return seasonal_naive_forecast(history, horizon, self.season)
        if not np.all(np.isfinite(forecast)):
            return seasonal_naive_forecast(history, horizon, self.season)
        return np.maximum(forecast, 0.0) if history.min() >= 0 else forecast

    def _seasonal_minimum(self) -> int:
        return 2 * self.season + self.MIN_POINTS

    def _fit(self, history: np.ndarray, initialization: str, **fit_options: float | bool) -> Any:
        """A fitted statsmodels ``HoltWintersResults`` (``fit_options`` go to its ``fit``)."""
        # Imported here: statsmodels is needed for trend evaluation only, and
        # importing it costs a second that the daemon's other commands need not pay.
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        with warnings.catch_warnings():
            # Convergence and start-up warnings would flood stderr once per
            # origin; the fallbacks deal with what matters.
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                history.astype(np.float64), trend="add", damped_trend=True,
                seasonal="add" if self._seasonal else None,
                seasonal_periods=self.season if self._seasonal else None,
                initialization_method=initialization,
            )  # fmt: skip
            return model.fit(**fit_options)


def _edge_llm(season: int) -> Forecaster:
    # Imported on use: torch and transformers load only when the edge LLM is asked for.
    from netgptd.trend.llm import EdgeLLMForecaster

    return EdgeLLMForecaster(season)


# name -> factory taking the seasonal period; a new forecaster is one more entry.
FORECASTERS: dict[str, Callable[[int], Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "last_value": lambda season: SeasonalNaive(1),
    "holt_winters": HoltWinters,
    "edge_llm": _edge_llm,
}
