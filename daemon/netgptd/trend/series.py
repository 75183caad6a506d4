"""Time series from ``timestamp,value`` CSV files, and their seasonal period.

Forecasters read the values as equally spaced, so a series is made regular
as it is read: rows sorted by time, repeated timestamps (a DST change in a
local-time export, a logger's double write) averaged, and the values put on
the grid of the series' own step (the median spacing), missing steps filled
by linear interpolation. What was done is said in ``Series.notes``.
Timestamps are ISO 8601 (UTC unless they carry a zone) or seconds since the
epoch; CRLF line ends are read as any others.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netgptd.eve import event_seconds

HEADER = ["timestamp", "value"]
# Candidate periods for 5-minute data: an hour, two hours, a day.
DEFAULT_PERIODS = (12, 24, 288)
# Autocorrelation a period needs to count as a season, and by how much it must
# stand above the lags a quarter period either side (tuned on the corpus
# series: the Twitter volumes' daily cycle reaches 0.29-0.46 after log1p).
MIN_SEASONAL_ACF = 0.25
MIN_PROMINENCE = 0.05
# A grid this many times longer than the rows is no series with gaps but scattered points:
# they are kept as they are rather than mostly invented by interpolation.
MAX_GRID_GROWTH = 4
# An epoch timestamp this large is in milliseconds (in seconds it would be past the year 5000).
EPOCH_MILLISECONDS = 1e11


class SeriesError(ValueError):
    """A series file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Series:
    name: str
    timestamps: np.ndarray  # seconds since the epoch, UTC; one step apart unless a note says otherwise
    values: np.ndarray  # float64
    notes: tuple[str, ...] = ()  # what reading changed to make the series regular, for people


def load_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV (header required, finite values) as a regular series."""
    times: list[float] = []
    values: list[float] = []
    epoch = 0
    try:
        with path.open(newline="") as stream:
            rows = csv.reader(stream)
            header = next(rows, None)
            if [cell.strip().lower() for cell in header or []] != HEADER:
                raise SeriesError(f"{path}:1: expected the header 'timestamp,value', found {header!r}")
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                when, value, from_epoch = _parse_row(path, line, row)
                epoch += from_epoch
                times.append(when)
                values.append(value)
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesError(f"{path}: cannot read: {exc}") from exc
    if not values:
        raise SeriesError(f"{path}: no data rows")
    timestamps, regular, notes = regularize(np.array(times), np.array(values, dtype=np.float64))
    if epoch:
        notes.insert(0, _count(epoch, "timestamp") + " read as time since the epoch")
    return Series(path.stem, timestamps, regular, tuple(notes))


def _parse_row(path: Path, line: int, row: list[str]) -> tuple[float, float, bool]:
    """(seconds since the epoch, value, whether the timestamp was a number) of one data row."""
    if len(row) != 2:
        raise SeriesError(f"{path}:{line}: expected 2 fields (timestamp,value), found {len(row)}")
    try:
        when, from_epoch = _epoch_seconds(row[0].strip())
    except ValueError:
        raise SeriesError(f"{path}:{line}: bad timestamp {row[0]!r}") from None
    try:
        value = float(row[1])
    except ValueError:
        raise SeriesError(f"{path}:{line}: bad value {row[1]!r}") from None
    if not np.isfinite(value):
        raise SeriesError(f"{path}:{line}: value {row[1]!r} is not a finite number")
    return when, value, from_epoch


def _epoch_seconds(text: str) -> tuple[float, bool]:
    """An ISO 8601 timestamp, or a number of seconds (milliseconds if huge) since the epoch."""
    try:
        return event_seconds(text), False
    except ValueError:
        number = float(text)  # ValueError for anything else
    if not np.isfinite(number):
        raise ValueError(text)
    return (number / 1000 if abs(number) >= EPOCH_MILLISECONDS else number), True


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _average_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``keys`` (sorted), the mean of ``values`` at each, and how many rows each had."""
    distinct, index, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return distinct, np.bincount(index, weights=values) / counts, counts


def regularize(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sort, average repeated timestamps, and resample onto the median step; and say what was done.

    Each timestamp moves to the nearest step of a grid from the first one;
    rows that land on the same step are averaged, steps without a row get
    the linear interpolation of their neighbours.
    """
    notes: list[str] = []
    backwards = int(np.count_nonzero(np.diff(times) < 0))
    if backwards:
        notes.append(f"timestamps went back {_count(backwards, 'time')}: rows sorted by time")
    times, values, counts = _average_by(times, values)
    repeated = counts > 1
    if repeated.any():
        rows = int(counts[repeated].sum())
        notes.append(_count(int(repeated.sum()), "repeated timestamp") + f": their {rows:,} rows averaged")
    if len(times) < 3:
        return times, values, notes
    step = float(np.median(np.diff(times)))
    offsets = (times - times[0]) / step
    slots = np.rint(offsets).astype(np.int64)
    if slots[-1] + 1 > MAX_GRID_GROWTH * len(times):
        notes.append(f"too irregular for a {step:g} s step: points kept as they are")
        return times, values, notes
    off_grid = int(np.count_nonzero(np.abs(offsets - slots) > 1e-6))
    slots, values, counts = _average_by(slots, values)
    grid = np.arange(slots[-1] + 1)
    changes = []
    if off_grid:
        changes.append(_count(off_grid, "timestamp") + " off the grid moved to the nearest step")
    if (counts > 1).any():
        changes.append(_count(int((counts > 1).sum()), "step") + " with several rows averaged")
    if len(grid) > len(slots):
        changes.append(_count(len(grid) - len(slots), "missing step") + " interpolated")
    if changes:
        notes.append(f"resampled to its step of {step:g} s: " + ", ".join(changes))
    return times[0] + grid * step, np.interp(grid, slots, values), notes


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
