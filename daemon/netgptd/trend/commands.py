"""``netgptd trend eval``: rolling-origin evaluation of the forecasters on CSV series."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from netgptd.argtypes import positive
from netgptd.trend.evaluate import EvaluationError, evaluate_series, mean_scores
from netgptd.trend.forecasters import FORECASTERS
from netgptd.trend.series import SeriesError, detect_season, load_series

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2


def _season(text: str) -> int | str:
    return text if text == "auto" else positive(text)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, not {text}")
    return value


def add_trend_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the ``trend`` command's subparsers."""
    p = subparsers.add_parser(
        "eval", help="compare forecasters on timestamp,value CSV series (rolling origin)",
        description="Fit each forecaster on the first part of each series, forecast HORIZON steps from "
                    "every STEP-th origin of the rest, and report MASE, rMAE (vs seasonal naive) and sMAPE "
                    "per series and averaged, as JSON.",
    )  # fmt: skip
    p.add_argument("csv", nargs="+", type=Path, metavar="CSV", help="timestamp,value files, equally spaced")
    p.add_argument("--horizon", type=positive, default=12, metavar="H", help="steps ahead to forecast (default 12)")
    p.add_argument("--season", type=_season, default="auto", metavar="S|auto",
                   help="seasonal period in steps, or auto: detected on each training part (default auto)")  # fmt: skip
    p.add_argument("--step", type=positive, metavar="K", help="steps between forecast origins (default: the horizon)")
    p.add_argument("--train-fraction", type=_fraction, default=0.7, metavar="F",
                   help="leading fraction of each series to fit on (default 0.7)")  # fmt: skip
    p.add_argument("--forecaster", action="append", choices=sorted(FORECASTERS), metavar="NAME",
                   help=f"evaluate only these (repeatable; default all: {', '.join(FORECASTERS)})")  # fmt: skip
    p.add_argument("--out", type=Path, metavar="PATH", help="write the JSON report here instead of stdout")
    p.set_defaults(func=cmd_trend_eval)
    return p


def cmd_trend_eval(args: argparse.Namespace) -> int:
    names = args.forecaster or list(FORECASTERS)
    if "holt_winters" in names and importlib.util.find_spec("statsmodels") is None:
        print("netgptd: error: holt_winters needs statsmodels (pip install 'netgptd[train]'); "
              "or choose others with --forecaster", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    step = args.step or args.horizon
    report: dict[str, Any] = {"horizon": args.horizon, "step": step, "train_fraction": args.train_fraction,
                              "series": {}}  # fmt: skip
    try:
        for path in tqdm(args.csv, desc="trend eval", unit="series", disable=not sys.stderr.isatty()):
            series = load_series(path)
            split = int(len(series.values) * args.train_fraction)
            season = detect_season(series.values[:split]) if args.season == "auto" else args.season
            forecasters = {name: FORECASTERS[name](season) for name in names}
            result = evaluate_series(series.values, forecasters, args.horizon, step, season, args.train_fraction)
            key = series.name if series.name not in report["series"] else str(path)  # same file name, two folders
            report["series"][key] = {"path": str(path), **result}
            log.info("trend_eval_series", series=series.name, season=season, origins=result["origins"])
    except (SeriesError, EvaluationError) as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report["mean"] = mean_scores(list(report["series"].values()))
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    print(summary_line(report), file=sys.stderr)
    return EXIT_OK


def summary_line(report: dict[str, Any]) -> str:
    """``trend eval: 8 series, H=12, mean rMAE: seasonal_naive 1.000 | holt_winters 0.912``."""
    cells = [f"{name} {'n/a' if s['rmae'] is None else format(s['rmae'], '.3f')}" for name, s in report["mean"].items()]
    return f"trend eval: {len(report['series'])} series, H={report['horizon']}, mean rMAE: {' | '.join(cells)}"
