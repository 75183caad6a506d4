"""Rolling-origin evaluation of forecasters on one series, with a time-based split.

Every forecaster is fitted on the first ``train_fraction`` of the series.
Forecast origins then run from the end of that part to the end of the
series, every ``step`` points, each forecasting the next ``horizon`` values
from everything observed so far. Errors are pooled over all origins and
horizons:

``mase``  MAE / in-sample MAE of seasonal naive on the training part
          (Hyndman & Koehler 2006; the scale is fixed before any forecast).
``rmae``  MAE / MAE of seasonal naive on the same origins (below 1 beats it).
``smape`` mean of 200 |F - A| / (|A| + |F|), in percent (0 where both are 0).

A ratio whose denominator is 0 (a flat training part, or seasonal naive
exact everywhere) is reported as None (JSON null), never as infinity.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from netgptd.trend.forecasters import Forecaster, seasonal_naive_forecast

METRICS = ("mase", "rmae", "smape")


class EvaluationError(ValueError):
    """A series that cannot be evaluated with the settings asked for."""


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - forecast)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    scale = np.abs(actual) + np.abs(forecast)
    terms = np.divide(200.0 * np.abs(actual - forecast), scale, out=np.zeros_like(scale, dtype=np.float64),
                      where=scale > 0)  # fmt: skip
    return float(np.mean(terms))


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def naive_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of seasonal naive on ``train`` (lag 1 where it holds no two seasons)."""
    m = season if len(train) > season else 1
    return mae(train[m:], train[:-m])


def mase(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray, season: int) -> float | None:
    return _ratio(mae(actual, forecast), naive_scale(train, season))


def rmae(actual: np.ndarray, forecast: np.ndarray, reference: np.ndarray) -> float | None:
    return _ratio(mae(actual, forecast), mae(actual, reference))


def origins(points: int, horizon: int, step: int, train_fraction: float) -> range:
    """Forecast origins: the number of points observed before each forecast."""
    return range(int(points * train_fraction), points - horizon + 1, step)


BATCH = 64  # histories per ``predict_many`` call


def forecast_all(forecaster: Forecaster, histories: Sequence[np.ndarray], horizon: int) -> np.ndarray:
    """One forecast per history (rows), in batches where the forecaster has ``predict_batch``/``predict_many``."""
    many = getattr(forecaster, "predict_batch", None) or getattr(forecaster, "predict_many", None)
    if many is None:
        return np.stack([forecaster.predict(h, horizon) for h in histories])
    return np.concatenate([np.stack(many(histories[i:i + BATCH], horizon)) for i in range(0, len(histories), BATCH)])


def evaluate_series(values: np.ndarray, forecasters: Mapping[str, Forecaster], horizon: int, step: int,
                    season: int, train_fraction: float = 0.7,
                    on_done: Callable[[str], None] | None = None) -> dict:  # fmt: skip
    """Scores of each forecaster (``{name: {mase, rmae, smape}}``) plus the split used.

    ``on_done(name)`` is called as each forecaster finishes (progress).
    """
    split = int(len(values) * train_fraction)
    starts = origins(len(values), horizon, step, train_fraction)
    if split < 2 or not starts:
        raise EvaluationError(f"{len(values)} points leave no forecast origin with horizon {horizon} "
                              f"after a {train_fraction:.0%} training part")  # fmt: skip
    train = values[:split]
    actual = np.stack([values[t:t + horizon] for t in starts])
    reference = np.stack([seasonal_naive_forecast(values[:t], horizon, season) for t in starts])
    scores: dict[str, dict[str, float | None]] = {}
    for name, forecaster in forecasters.items():
        forecaster.fit(train)
        forecast = forecast_all(forecaster, [values[:t] for t in starts], horizon)
        scores[name] = {"mase": mase(actual, forecast, train, season), "rmae": rmae(actual, forecast, reference),
                        "smape": smape(actual, forecast)}  # fmt: skip
        if on_done:
            on_done(name)
    return {"points": len(values), "train_points": split, "season": season, "origins": len(starts),
            "forecasters": scores}  # fmt: skip


def mean_scores(reports: list[dict]) -> dict[str, dict[str, float | None]]:
    """Arithmetic mean of each forecaster's metrics over the series (None where no series has a value)."""
    names = dict.fromkeys(name for report in reports for name in report["forecasters"])
    means: dict[str, dict[str, float | None]] = {}
    for name in names:
        scores = [report["forecasters"][name] for report in reports if name in report["forecasters"]]
        values = {metric: [s[metric] for s in scores if s[metric] is not None] for metric in METRICS}
        means[name] = {metric: float(np.mean(v)) if v else None for metric, v in values.items()}
    return means
