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


def _share(text: str, inclusive: bool = True) -> float:
    """A number from 0 to 1 (``inclusive``), else strictly between them."""
    value = float(text)
    if not (0 <= value <= 1 if inclusive else 0 < value < 1):
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, not {text}")
    return value


def _fraction(text: str) -> float:
    return _share(text, inclusive=False)


def add_trend_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the ``trend`` command's subparsers."""
    p = subparsers.add_parser(
        "eval", help="compare forecasters on timestamp,value CSV series (rolling origin)",
        description="Fit each forecaster on the first part of each series, forecast HORIZON steps from "
                    "every STEP-th origin of the rest, and report MASE, rMAE (vs seasonal naive) and sMAPE "
                    "per series and averaged, as JSON.",
    )  # fmt: skip
    p.add_argument("csv", nargs="+", type=Path, metavar="CSV",
                   help="timestamp,value files, ISO or epoch timestamps (made regular on reading: see the notes)")
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


NEEDS = {"edge_llm": ("torch", "transformers")}  # forecaster: its libraries


def cmd_trend_eval(args: argparse.Namespace) -> int:
    names = args.forecaster or list(FORECASTERS)
    for name, needs in NEEDS.items():
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if name in names and missing:
            print(f"netgptd: error: {name} needs {', '.join(missing)} (pip install 'netgptd[train]'); "
                  "or choose others with --forecaster", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    step = args.step or args.horizon
    report: dict[str, Any] = {"horizon": args.horizon, "step": step, "train_fraction": args.train_fraction,
                              "series": {}}  # fmt: skip
    bar = tqdm(total=len(args.csv) * len(names), desc="trend eval", unit="forecaster",
               disable=not sys.stderr.isatty())  # fmt: skip
    try:
        for path in args.csv:
            series = load_series(path)
            split = int(len(series.values) * args.train_fraction)
            season = detect_season(series.values[:split]) if args.season == "auto" else args.season
            forecasters = {name: FORECASTERS[name](season) for name in names}
            bar.set_postfix_str(series.name)
            result = evaluate_series(series.values, forecasters, args.horizon, step, season, args.train_fraction,
                                     on_done=lambda name: bar.update())  # fmt: skip
            key = series.name if series.name not in report["series"] else str(path)  # same file name, two folders
            report["series"][key] = {"path": str(path), **result, "notes": list(series.notes)}
            if series.notes:  # the series was made regular: say how, next to the progress bar
                tqdm.write(f"netgptd trend eval: {path}: {'; '.join(series.notes)}", file=sys.stderr)
            log.info("trend_eval_series", series=series.name, season=season, origins=result["origins"])
    except (SeriesError, EvaluationError) as exc:
        bar.close()
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar.close()
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


def add_trend_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` (the edge LLM forecaster) to the ``trend`` command's subparsers."""
    from netgptd.trend.llm_train import TrainConfig

    defaults = TrainConfig()
    p = subparsers.add_parser(
        "train", help="train the edge LLM forecaster (edge_llm) from scratch, or LoRA on a site's history",
        description="Train the edge LLM forecaster on the training parts of CSV series (from scratch, or from "
                    "--base), or fine-tune it with a LoRA adapter on a site's own window history (--lora). "
                    "Writes a model folder (config.json, model.safetensors, manifest.json), or an adapter "
                    "folder with --lora; use it with NETGPTD_TREND_LLM / NETGPTD_TREND_LLM_ADAPTER.",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="model or adapter folder to write")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, nargs="+", metavar="FILE", help="timestamp,value series")
    source.add_argument("--history", type=Path, metavar="STATE_DIR", help="a state directory's window history")
    p.add_argument("--holdout", type=Path, nargs="+", default=[], metavar="FILE",
                   help="whole series kept out of training (also where --csv names them) and scored as unseen for "
                        "the manifest's validation")  # fmt: skip
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter on --base instead of all weights")
    p.add_argument("--base", type=Path, metavar="DIR",
                   help="start from this model folder (default: from scratch; with --lora: the shipped model)")
    p.add_argument("--epochs", type=positive, default=defaults.epochs, metavar="N",
                   help=f"passes of --examples examples (default {defaults.epochs})")  # fmt: skip
    p.add_argument("--examples", type=positive, default=None, metavar="N",
                   help=f"examples per epoch (default {defaults.examples}; with --lora 4096)")
    p.add_argument("--batch", type=positive, default=defaults.batch, metavar="N")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {defaults.lr}; --lora 1e-3)")
    p.add_argument("--synthetic", type=int, default=defaults.synthetic, metavar="N",
                   help=f"synthetic series mixed in from scratch (default {defaults.synthetic}; 0: none)")
    p.add_argument("--synthetic-share", type=_share, default=defaults.synthetic_share, metavar="F",
                   help=f"share of the examples drawn from synthetic series (default {defaults.synthetic_share})")
    p.add_argument("--train-fraction", type=_share, default=0.7, metavar="F",
                   help="leading fraction of each CSV series to train on, as trend eval splits; 1: all of it "
                        "(default 0.7)")  # fmt: skip
    p.add_argument("--val-fraction", type=_share, default=defaults.val_fraction, metavar="F",
                   help="trailing fraction of each training series kept to score the model; 0: none (then "
                        f"only --holdout series are scored) (default {defaults.val_fraction})")  # fmt: skip
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="with --history: window metrics to learn (repeatable; default bytes and flows, plus "
                        "the bytes of the top applications)")  # fmt: skip
    p.add_argument("--location", metavar="TEXT", help="location written into the prompts")
    p.add_argument("--timezone", metavar="ZONE", help="local time zone for the prompts (default UTC)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=positive, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    p.add_argument("--max-minutes", type=float, default=defaults.max_minutes, metavar="M",
                   help=f"stop the training loop after M minutes, 0: never (default {defaults.max_minutes})")
    p.set_defaults(func=cmd_trend_train)
    return p


def cmd_trend_train(args: argparse.Namespace) -> int:
    missing = [name for name in ("torch", "transformers") + (("peft",) if args.lora else ())
               if importlib.util.find_spec(name) is None]  # fmt: skip
    if missing:
        print(f"netgptd: error: trend train needs {', '.join(missing)} (pip install 'netgptd[train]')",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    from dataclasses import replace

    from netgptd.trend import llm_train

    config = replace(llm_train.TrainConfig(), epochs=args.epochs, batch=args.batch, synthetic=args.synthetic,
                     seed=args.seed, threads=args.threads, device=args.device, max_minutes=args.max_minutes or None,
                     timezone=args.timezone, synthetic_share=args.synthetic_share,
                     val_fraction=args.val_fraction)  # fmt: skip
    if args.lora:
        config = replace(config, examples=4096, lr=1e-3, synthetic=0)
    if args.examples:
        config = replace(config, examples=args.examples)
    if args.lr:
        config = replace(config, lr=args.lr)
    if args.holdout and not args.csv:
        print("netgptd: error: --holdout goes with --csv", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.csv:
            held = {path.resolve() for path in args.holdout}
            series = llm_train.series_from_csvs([p for p in args.csv if p.resolve() not in held], args.train_fraction)
            series += llm_train.series_from_csvs(args.holdout, holdout=True)
            for s in series:
                s.location = args.location
        else:
            series = llm_train.series_from_history(args.history, tuple(args.metric or ("bytes", "flows")),
                                                   location=args.location)  # fmt: skip
        if not series:
            raise ValueError("no series to train on")
        manifest = llm_train.train(series, args.out, config, base=args.base, lora=args.lora)
    except (SeriesError, OSError, ValueError) as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    mean = manifest["validation_rmae"].get("mean") or {}
    cells = " | ".join(f"{name} {value:.3f}" for name, value in mean.items())
    base = (manifest.get("base_validation_rmae") or {}).get("mean")
    cells += f" | base model {base['edge_llm']:.3f}" if cells and base else ""
    print(f"trend train: {manifest['kind']} in {args.out}, {len(series)} series, {manifest['training']['steps']} "
          f"steps in {manifest['training']['train_seconds']:.0f} s"
          + (f"; validation rMAE: {cells}" if cells else ""), file=sys.stderr)  # fmt: skip
    return EXIT_OK
