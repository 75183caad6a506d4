"""Series loading, season detection, forecasters, metrics and ``trend eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from netgptd import logs
from netgptd.trend.commands import add_trend_eval_parser
from netgptd.trend.evaluate import (BATCH, evaluate_series, forecast_all, mase, mean_scores, naive_scale, origins,
                                   rmae, smape)
from netgptd.trend.forecasters import FORECASTERS, HoltWinters, SeasonalNaive, seasonal_naive_forecast
from netgptd.trend.series import SeriesError, detect_season, load_series, regularize

RNG = np.random.default_rng(7)


def write_csv(path: Path, values: np.ndarray | list[float], start: int = 1_400_000_000) -> Path:
    lines = ["timestamp,value"] + [f"{np.datetime64(start + 300 * i, 's')},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def seasonal(points: int, period: int, noise: float = 0.3, trend: float = 0.0) -> np.ndarray:
    t = np.arange(points)
    return 10 + 3 * np.sin(2 * np.pi * t / period) + trend * t + RNG.normal(0, noise, points)


def run_cli(argv: list[str]) -> int:
    """Like ``netgptd trend ...``: structlog JSON on stderr at level warning, then the command."""
    logs.configure(sys.stderr, "warning")
    parser = argparse.ArgumentParser()
    add_trend_eval_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


# --- series files ---------------------------------------------------------


def test_load_series_reads_values_and_times(tmp_path: Path) -> None:
    series = load_series(write_csv(tmp_path / "s.csv", [1, 2.5, 0]))
    assert series.name == "s"
    assert series.values.tolist() == [1.0, 2.5, 0.0]
    assert np.diff(series.timestamps).tolist() == [300.0, 300.0]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("time,value\n2015-01-01 00:00:00,1\n", ":1:", "header"),
    ("timestamp,value\n2015-01-01 00:00:00,1\nyesterday,2\n", ":3:", "bad timestamp 'yesterday'"),
    ("timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,lots\n", ":3:", "bad value 'lots'"),
    ("timestamp,value\n2015-01-01 00:00:00,1,2\n", ":2:", "expected 2 fields"),
    ("timestamp,value\n2015-01-01 00:00:00,nan\n", ":2:", "not a finite number"),
    ("timestamp,value\n", "", "no data rows"),
    ("", ":1:", "header"),
], ids=["header", "timestamp", "value", "fields", "nan", "no-rows", "empty"])  # fmt: skip
def test_bad_series_files_name_the_file_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SeriesError) as caught:
        load_series(path)
    assert str(caught.value).startswith(f"{path}{where}") and what in str(caught.value)


def test_repeated_timestamps_are_averaged_and_missing_steps_interpolated(tmp_path: Path) -> None:
    """A local-time export across a DST change, with CRLF line ends, as NAB's files have them."""
    rows = ["2014-03-09 01:50:00,10", "2014-03-09 01:55:00,20",  # then 02:00-02:55 do not exist locally
            "2014-03-09 03:00:00,30", "2014-03-09 03:00:00,50",  # the lost hour's rows, stamped 03:00
            "2014-03-09 03:05:00,60", "2014-03-09 03:10:00,70", "2014-03-09 03:20:00,90"]  # fmt: skip
    path = tmp_path / "dst.csv"
    path.write_bytes(("timestamp,value\r\n" + "\r\n".join(rows) + "\r\n").encode())
    series = load_series(path)
    assert np.diff(series.timestamps).tolist() == [300.0] * (len(series.values) - 1)
    assert series.timestamps[0] == 1394329800.0  # 2014-03-09T01:50:00Z
    expected = [10, 20] + list(np.linspace(20, 40, 14)[1:-1]) + [40, 60, 70, 80, 90]
    assert series.values.tolist() == pytest.approx(expected)
    assert series.notes == ("1 repeated timestamp: their 2 rows averaged",
                            "resampled to its step of 300 s: 13 missing steps interpolated")  # fmt: skip


def test_epoch_timestamps_and_rows_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "epoch.csv"
    path.write_text("timestamp,value\n1400000600,3\n1400000000,1\n1400000300,2\n1400000901,4\n")
    series = load_series(path)
    assert series.values.tolist() == [1, 2, 3, 4]
    assert series.timestamps.tolist() == [1400000000.0 + 300 * i for i in range(4)]
    assert series.notes == ("4 timestamps read as time since the epoch", "timestamps went back 1 time: rows sorted by time",
                            "resampled to its step of 300 s: 1 timestamp off the grid moved to the nearest step")  # fmt: skip
    millis = tmp_path / "millis.csv"
    millis.write_text("timestamp,value\n1400000000000,1\n1400000300000,2\n1400000600000,3\n")
    assert load_series(millis).timestamps.tolist() == [1400000000.0, 1400000300.0, 1400000600.0]


def test_scattered_points_are_not_mostly_invented() -> None:
    """Three points a second apart and one 1,000 s later: a grid would be 99.6 % interpolation."""
    times, values, notes = regularize(np.array([0.0, 1.0, 2.0, 1000.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert times.tolist() == [0, 1, 2, 1000] and values.tolist() == [1, 2, 3, 4]
    assert notes == ["too irregular for a 1 s step: points kept as they are"]


def test_a_regular_series_is_read_as_it_is(tmp_path: Path) -> None:
    series = load_series(write_csv(tmp_path / "s.csv", seasonal(50, 12)))
    assert series.notes == () and len(series.values) == 50


def test_every_real_export_is_read_as_a_regular_series(corpus: Path) -> None:
    """NAB's files as published: repeated timestamps at DST changes, CRLF, irregular sensors."""
    files = sorted((corpus / "series-more").glob("*.csv"))
    if not files:
        pytest.skip("no series-more in the corpus")
    noted = {}
    for path in files:
        series = load_series(path)
        steps = np.diff(series.timestamps)
        assert len(series.values) >= 1000 and np.allclose(steps, steps[0]), path
        noted[path.stem] = series.notes
    assert any("repeated timestamp" in n for n in noted["realKnownCause__ec2_request_latency_system_failure"])
    assert any("sorted by time" in n for n in noted["realKnownCause__machine_temperature_system_failure"])
    assert noted["artificialNoAnomaly__art_daily_no_noise"] == ()


def test_trend_eval_says_what_it_did_to_a_real_export(corpus: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = corpus / "series-more" / "realAdExchange__exchange-2_cpc_results.csv"  # CRLF, 12:00:01 twice
    if not path.is_file():
        pytest.skip(f"{path} not in the corpus")
    out = tmp_path / "report.json"
    assert run_cli(["eval", str(path), "--forecaster", "last_value", "--forecaster", "seasonal_naive",
                    "--out", str(out)]) == 0  # fmt: skip
    notes = json.loads(out.read_text())["series"][path.stem]["notes"]
    assert notes[0] == "1 repeated timestamp: their 2 rows averaged", notes
    assert f"netgptd trend eval: {path}: {'; '.join(notes)}" in capsys.readouterr().err


# --- season detection ---------------------------------------------------------


def test_detects_the_period_of_a_seasonal_series_even_with_bursts() -> None:
    values = seasonal(2000, 24, noise=0.5)
    values[RNG.integers(0, 2000, 20)] += 500  # bursts like the Twitter volumes'
    assert detect_season(values) == 24
    assert detect_season(seasonal(4 * 288, 288)) == 288


@pytest.mark.parametrize("values", [
    np.cumsum(np.random.default_rng(1).normal(size=3000)),  # persistent, but no season
    np.random.default_rng(2).normal(size=3000),
    np.full(1000, 5.0),
    np.arange(30.0),  # too short for any candidate's two cycles but 12's
])  # fmt: skip
def test_no_season_is_1(values: np.ndarray) -> None:
    assert detect_season(values) == 1


# --- metrics, hand-computed -------------------------------------------------------


def test_metric_formulas() -> None:
    train = np.array([1.0, 3, 2, 6])
    assert naive_scale(train, 1) == pytest.approx(7 / 3)  # |3-1|, |2-3|, |6-2|
    assert naive_scale(train, 2) == pytest.approx(2.0)  # |2-1|, |6-3|
    assert naive_scale(train, 12) == pytest.approx(7 / 3)  # no two seasons: lag 1
    actual, forecast, reference = np.array([4.0, 4]), np.array([3.0, 6]), np.array([4.0, 2])
    assert mase(actual, forecast, train, 2) == pytest.approx(1.5 / 2)
    assert rmae(actual, forecast, reference) == pytest.approx(1.5 / 1)
    assert smape(np.array([1.0, 2]), np.array([1.0, 4])) == pytest.approx((0 + 200 * 2 / 6) / 2)
    assert smape(np.array([0.0, 0]), np.array([0.0, 5])) == pytest.approx(100.0)  # 0/0 counts 0, then 200
    assert mase(actual, forecast, np.full(5, 3.0), 1) is None  # flat training part: no scale
    assert rmae(actual, forecast, actual) is None


def test_seasonal_naive_and_origins() -> None:
    history = np.array([1.0, 2, 3, 4, 5, 6])
    assert seasonal_naive_forecast(history, 5, 3).tolist() == [4, 5, 6, 4, 5]
    assert seasonal_naive_forecast(history, 2, 1).tolist() == [6, 6]
    assert seasonal_naive_forecast(np.array([7.0, 8]), 3, 3).tolist() == [7, 8, 7]
    assert list(origins(20, 3, 2, 0.5)) == [10, 12, 14, 16]


def test_rolling_origin_scores_on_a_line() -> None:
    values = np.arange(10.0)
    result = evaluate_series(values, {"last_value": SeasonalNaive(1), "holt_winters": HoltWinters(1)},
                             horizon=2, step=1, season=1, train_fraction=0.5)  # fmt: skip
    assert (result["train_points"], result["origins"]) == (5, 4)  # origins 5, 6, 7, 8
    last = result["forecasters"]["last_value"]
    assert last["mase"] == pytest.approx(1.5)  # errors 1 and 2 at every origin; training naive MAE 1
    assert last["rmae"] == pytest.approx(1.0)  # season 1: seasonal naive is last value
    expected = np.mean([200 * h / (2 * t + h - 2) for t in range(5, 9) for h in (1, 2)])  # A = t+h-1, F = t-1
    assert last["smape"] == pytest.approx(expected)


def test_holt_winters_beats_seasonal_naive_on_a_noisy_trending_season() -> None:
    values = seasonal(800, 24, noise=0.8, trend=0.01)
    result = evaluate_series(values, {"holt_winters": HoltWinters(24)}, horizon=12, step=6, season=24)
    assert result["forecasters"]["holt_winters"]["rmae"] < 0.9


def test_holt_winters_forecasts_a_clean_trending_season_almost_exactly() -> None:
    t = np.arange(2000)
    values = 100 + 20 * np.sin(2 * np.pi * t / 288) + 0.01 * t
    model = HoltWinters(288)
    model.fit(values[:1700])
    forecast = model.predict(values[:1800], 12)
    assert np.max(np.abs(forecast - values[1800:1812])) < 0.5  # seasonal naive is off by up to 3


def test_holt_winters_forecasts_many_origins_at_once_as_one_by_one() -> None:
    values = np.abs(seasonal(1500, 24, noise=0.8, trend=0.01))
    model = HoltWinters(24)
    model.fit(values[:1000])
    histories = [values[:t] for t in (30, 60, 1000, 1100, 1200)]  # different lengths: start-up, then the window
    batch = model.predict_batch(histories, 12)
    for history, forecast in zip(histories, batch):
        assert forecast == pytest.approx(model.predict(history, 12))


def test_trend_eval_of_a_long_daily_series_takes_seconds() -> None:
    """statsmodels took 20 s to fit a 5-minute series with a daily season and 0.3 s per origin."""
    import time

    values = np.abs(seasonal(8000, 288, noise=1.0) * 100)
    forecasters = {name: FORECASTERS[name](288) for name in ("seasonal_naive", "last_value", "holt_winters")}
    started = time.perf_counter()
    result = evaluate_series(values, forecasters, horizon=12, step=12, season=288)
    assert result["origins"] == 200 and time.perf_counter() - started < 5
    assert result["forecasters"]["holt_winters"]["rmae"] < 1


def test_trend_eval_batches_the_origins_where_a_forecaster_can() -> None:
    class Batched:
        calls: list[int] = []

        def fit(self, history: np.ndarray) -> None:
            pass

        def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
            raise AssertionError("one origin at a time")

        def predict_many(self, histories: list[np.ndarray], horizon: int) -> list[np.ndarray]:
            self.calls.append(len(histories))
            return [np.full(horizon, h[-1]) for h in histories]

    values = np.arange(1000.0)
    forecasts = forecast_all(Batched(), [values[:t] for t in range(100, 100 + BATCH + 5)], 3)
    assert Batched.calls == [BATCH, 5] and forecasts.shape == (BATCH + 5, 3)
    assert forecasts[-1].tolist() == [100.0 + BATCH + 3] * 3


@pytest.mark.parametrize("history", [np.zeros(500), np.full(50, 3.0), np.array([5.0, 7, 6]),
                                     np.r_[np.zeros(490), 1, np.zeros(9)]])  # fmt: skip
def test_holt_winters_never_crashes_on_short_flat_or_zero_series(history: np.ndarray) -> None:
    model = HoltWinters(24)
    model.fit(history)
    forecast = model.predict(history, 12)
    assert forecast.shape == (12,) and np.all(np.isfinite(forecast)) and np.all(forecast >= 0)
    if np.ptp(history) == 0:
        assert forecast.tolist() == [history[0]] * 12


def test_another_forecaster_is_scored_under_its_own_name() -> None:
    class Mean:
        def fit(self, history: np.ndarray) -> None:
            self.mean = float(history.mean())

        def predict(self, history: np.ndarray, horizon: int) -> np.ndarray:
            return np.full(horizon, self.mean)

    values = seasonal(300, 12)
    result = evaluate_series(values, {"mean": Mean(), "seasonal_naive": FORECASTERS["seasonal_naive"](12)},
                             horizon=6, step=6, season=12)  # fmt: skip
    assert set(result["forecasters"]) == {"mean", "seasonal_naive"}
    assert result["forecasters"]["seasonal_naive"]["rmae"] == pytest.approx(1.0)
    means = mean_scores([result, result])
    assert means["mean"]["mase"] == pytest.approx(result["forecasters"]["mean"]["mase"])


# --- the command ---------------------------------------------------------------------


def test_trend_eval_writes_a_report_and_a_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_csv(tmp_path / "a.csv", seasonal(400, 12))
    b = write_csv(tmp_path / "b.csv", np.zeros(300))
    out = tmp_path / "report.json"
    assert run_cli(["eval", str(a), str(b), "--horizon", "6", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["horizon"], report["step"], report["train_fraction"]) == (6, 6, 0.7)
    assert report["series"]["a"]["season"] == 12 and report["series"]["b"]["season"] == 1
    assert set(report["series"]["a"]["forecasters"]) == {"seasonal_naive", "last_value", "holt_winters", "edge_llm"}
    assert report["series"]["b"]["forecasters"]["holt_winters"]["mase"] is None  # all zeros: no scale
    assert report["mean"]["seasonal_naive"]["rmae"] == pytest.approx(1.0)
    captured = capsys.readouterr()
    assert captured.out == ""
    summary = captured.err.splitlines()[-1]
    assert summary.startswith("trend eval: 2 series, H=6, mean rMAE: seasonal_naive 1.000 | last_value")


def test_trend_eval_prints_json_and_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_csv(tmp_path / "good.csv", seasonal(200, 12))
    assert run_cli(["eval", str(good), "--season", "12", "--step", "3", "--forecaster", "last_value"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series"]["good"]["season"] == 12 and set(report["mean"]) == {"last_value"}
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2015-01-01 00:00:00,x\n")
    assert run_cli(["eval", str(good), str(bad)]) == 2
    assert f"netgptd: error: {bad}:2: bad value 'x'" in capsys.readouterr().err
    short = write_csv(tmp_path / "short.csv", [1, 2, 3])
    assert run_cli(["eval", str(short)]) == 2


def test_trend_eval_on_a_real_corpus_series(corpus: Path, tmp_path: Path) -> None:
    path = corpus / "series" / "ec2_network_in_257a54.csv"
    if not path.is_file():
        pytest.skip(f"{path} not in the corpus")
    out = tmp_path / "report.json"
    assert run_cli(["eval", str(path), "--horizon", "12", "--out", str(out)]) == 0
    series = json.loads(out.read_text())["series"]["ec2_network_in_257a54"]
    assert series["notes"] == ["resampled to its step of 300 s: 2 missing steps interpolated"]
    assert series["points"] == 4034 and series["season"] == 12 and series["origins"] == 100
    scores = series["forecasters"]
    assert scores["seasonal_naive"]["rmae"] == pytest.approx(1.0)
    for name in ("last_value", "holt_winters"):
        assert all(np.isfinite(scores[name][metric]) for metric in ("mase", "rmae", "smape"))
    assert scores["holt_winters"]["rmae"] < 0.9  # 0.80 (statsmodels 0.15 reached 0.985)
