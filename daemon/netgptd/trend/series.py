"""Time series from ``timestamp,value`` CSV files, and their seasonal period.

The values are treated as equally spaced (the corpus series are 5-minute
steps with a handful of missing points); timestamps are kept for reports
and checked to increase.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netgptd.trend.windows import event_seconds

HEADER = ["timestamp", "value"]
# Candidate periods for 5-minute data: an hour, two hours, a day.
DEFAULT_PERIODS = (12, 24, 288)
# Autocorrelation a period needs to count as a season, and by how much it must
# stand above the lags a quarter period either side (tuned on the corpus
# series: the Twitter volumes' daily cycle reaches 0.29-0.46 after log1p).
MIN_SEASONAL_ACF = 0.25
MIN_PROMINENCE = 0.05


class SeriesError(ValueError):
    """A series file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Series:
    name: str
    timestamps: np.ndarray  # seconds since the epoch, UTC
    values: np.ndarray  # float64


def load_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV (header required, timestamps increasing, finite values)."""
    times: list[float] = []
    values: list[float] = []
    try:
        with path.open(newline="") as stream:
            rows = csv.reader(stream)
            header = next(rows, None)
            if [cell.strip().lower() for cell in header or []] != HEADER:
                raise SeriesError(f"{path}:1: expected the header 'timestamp,value', found {header!r}")
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                when, value = _parse_row(path, line, row)
                if times and when <= times[-1]:
                    raise SeriesError(f"{path}:{line}: timestamp {row[0]!r} does not come after the line before")
                times.append(when)
                values.append(value)
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesError(f"{path}: cannot read: {exc}") from exc
    if not values:
        raise SeriesError(f"{path}: no data rows")
    return Series(path.stem, np.array(times), np.array(values, dtype=np.float64))


def _parse_row(path: Path, line: int, row: list[str]) -> tuple[float, float]:
    if len(row) != 2:
        raise SeriesError(f"{path}:{line}: expected 2 fields (timestamp,value), found {len(row)}")
    try:
        when = event_seconds(row[0].strip())
    except ValueError:
        raise SeriesError(f"{path}:{line}: bad timestamp {row[0]!r}") from None
    try:
        value = float(row[1])
    except ValueError:
        raise SeriesError(f"{path}:{line}: bad value {row[1]!r}") from None
    if not np.isfinite(value):
        raise SeriesError(f"{path}:{line}: value {row[1]!r} is not a finite number")
    return when, value


def autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation at lags ``0..max_lag`` (all zeros for a flat series)."""
    x = values - values.mean()
    denominator = float(x @ x)
    if denominator == 0.0:
        return np.zeros(max_lag + 1)
    size = 1 << int(2 * len(x) - 1).bit_length()  # zero-padded FFT: linear, not circular, correlation
    spectrum = np.fft.rfft(x, size)
    return np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1] / denominator


def detect_season(values: np.ndarray, periods: tuple[int, ...] = DEFAULT_PERIODS,
                  min_acf: float = MIN_SEASONAL_ACF, min_prominence: float = MIN_PROMINENCE) -> int:  # fmt: skip
    """The candidate period with the strongest autocorrelation peak; 1 (no season) if none.

    The autocorrelation is taken of ``log1p(values - min)``: traffic and
    popularity series are heavy-tailed, and a few bursts otherwise swamp a
    daily cycle. A period counts where the series holds two full cycles, the
    autocorrelation there reaches ``min_acf``, and it stands ``min_prominence``
    above the lags a quarter period either side: a slowly varying series is
    correlated at every short lag, which is persistence, not a season.
    """
    usable = [p for p in periods if p >= 4 and 2 * p <= len(values)]
    if not usable:
        return 1
    values = values.astype(np.float64)
    acf = autocorrelation(np.log1p(values - values.min()), max(p + p // 4 for p in usable))
    peaks = [p for p in usable
             if acf[p] >= min_acf and acf[p] - max(acf[p - p // 4], acf[p + p // 4]) >= min_prominence]  # fmt: skip
    return max(peaks, key=lambda p: acf[p]) if peaks else 1
