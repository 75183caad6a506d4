"""The ``netgptd`` command: every user-facing entry point hangs off it."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import structlog

from netgptd import __version__, logs
from netgptd.config import FloodLogSettings, SensorSettings
from netgptd.flow.config import FlowConfig
from netgptd.flow_ids import first_flow_id
from netgptd.lab import runner
from netgptd.model.bundle import DEFAULT_BUNDLE, BundleError, load_bundle
from netgptd.model.generate import GenerationError, generate, write_capture
from netgptd.model.session import Classifier, ModelSession
from netgptd.model.tokenizer import TokenizerConfig
from netgptd.lab.safety import LabError
from netgptd.lab.scenarios import UNAVAILABLE
from netgptd.plugin_host import PluginError, PluginHost
from netgptd import service
from netgptd.argtypes import count, non_negative, positive
from netgptd.trend.commands import add_trend_eval_parser, add_trend_train_parser, cmd_trend_eval
from netgptd.cloud.ask_cli import add_ask_parser
from netgptd.model.publish_cli import add_model_parser
from netgptd.model.triton_serve import add_serve_central_parser
from netgptd.cloud.serve import add_serve_llm_parser
from netgptd.intent.cli import add_intent_parsers, cmd_intent
from netgptd.hotpath import ENGINES, EngineError, engine
from netgptd.replay import replay
from netgptd.synth.demo import write_demo_capture
from netgptd.summary import SummaryCollector

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2
# Flows and their events are many small objects that die young or live as long as their flow: at Python's
# default first-generation threshold (700 allocations) the collector walks the whole flow table thousands of
# times a second under a flood. A larger first generation replays a 200k-flow spoofed SYN flood 13-20 %
# faster at the same peak RSS (330 MB; measured side by side, netgptd replay with rules and EVE).
GC_THRESHOLDS = (50_000, 20, 100)
DEFAULT_CORPUS = Path(os.environ.get("NETGPT_CORPUS", "../shared/corpus"))


def _classifier(args: argparse.Namespace) -> tuple[Classifier | None, FlowConfig | None]:
    """The model for a replay: --model, else the shipped one; none with --no-model.

    Without --model and without a shipped model, replay goes on without
    classification and says so once.
    """
    if args.no_model:
        return None, None
    path = args.model or DEFAULT_BUNDLE
    if args.model is None and not (DEFAULT_BUNDLE / "manifest.json").exists():
        log.warning("no_model", detail=f"no model shipped at {DEFAULT_BUNDLE}: flows are not classified")
        return None, None
    bundle = load_bundle(path)
    classifier = Classifier(ModelSession(bundle), cache_size=args.verdict_cache, port_blind=args.port_blind)
    tokenizer = bundle.tokenizer
    return classifier, tokenizer.flow_config()


def cmd_replay(args: argparse.Namespace) -> int:
    summary = SummaryCollector()
    sensor = SensorSettings().sensor  # replay has no configuration: the default sensor name, the host's
    enabled: dict[str, dict] = {}
    if args.rules:
        enabled["rules"] = {}
    if args.eve:
        enabled["eve"] = {"path": args.eve, "append": False}
    try:
        plugins = PluginHost(enabled, host=sensor, flood_log=FloodLogSettings(enabled=not args.every_flow))
    except PluginError as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plugins.add(summary, "summary")
    try:
        classifier, flow_config = _classifier(args)
    except BundleError as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        engine(args.engine)
    except EngineError as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = replay(args.pcap, plugins.emit, flow_config=flow_config, progress=sys.stderr.isatty() and not args.quiet,
                        classifier=classifier, alert_confidence=args.alert_confidence,
                        first_flow_id=first_flow_id(sensor, time.time()), batch_sink=plugins.emit_batch,
                        finish=plugins.flush_flood_log, engine=args.engine)  # fmt: skip
    finally:
        plugins.close()
    for message in result.failed_files:
        print(f"netgptd: error: {message}", file=sys.stderr)
    if args.eve != "-" and not args.quiet:
        print(summary.render())
    return EXIT_USAGE if result.failed_files else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="netgptd-demo-") as tmp:
        capture = write_demo_capture(Path(tmp) / "demo.pcapng")
        print(f"netgptd demo: replaying the built-in capture of a small office ({capture.stat().st_size:,} bytes)")
        args.pcap = [capture]
        return cmd_replay(args)


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample flows of one app from the bundle's LM into a pcap, then classify them with its classifier."""
    try:
        bundle = load_bundle(args.model or DEFAULT_BUNDLE)
        result = generate(bundle, args.app, args.n, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
        write_capture(args.out, result)
    except (BundleError, GenerationError) as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"netgptd: error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    written = len(result.flows)
    dropped = sum(result.dropped.values())
    notes = f"{result.sampled} sampled, {dropped} dropped"
    if dropped:
        notes += f" ({', '.join(f'{k} {v}' for k, v in sorted(result.dropped.items()))})"
    notes += f", {result.repaired} repaired, {result.usual_port} on port {result.fallback_port} for a sampled port 0"
    print(f"netgptd generate: {written} {args.app} flows ({len(result.records)} packets) written to {args.out} ({notes})")
    if not written:
        return EXIT_OK
    events: list[dict] = []
    tokenizer = bundle.tokenizer
    try:
        classifier = Classifier(ModelSession(bundle))
    except (BundleError, ValueError) as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    replay([args.out], events.append, classifier=classifier,
           flow_config=tokenizer.flow_config())  # fmt: skip
    flows = [e for e in events if e.get("event_type") == "flow"]
    hits = sum(1 for e in flows if (e.get("netgpt") or {}).get("app") == args.app)
    share = 100.0 * hits / len(flows) if flows else 0.0
    print(f"classified as {args.app} by {bundle.model_id}: {hits} of {len(flows)} flows ({share:.1f}%)")
    return EXIT_OK


def cmd_lab_list(args: argparse.Namespace) -> int:
    known = runner.scenarios()
    width = max(map(len, [*known, *UNAVAILABLE])) + 2
    for name, s in known.items():
        missing = runner.missing_requirements(s)
        note = f"  (needs {', '.join(missing)})" if missing else ""
        print(f"{name:<{width}}{s.kind:<8}{s.summary}{note}")
    for name, needs in sorted(UNAVAILABLE.items()):
        print(f"{name:<{width}}{'?':<8}(needs {needs})")
    return EXIT_OK


def cmd_lab_run(args: argparse.Namespace) -> int:
    try:
        results = runner.run_lab(args.scenario, args.out, args.duration)
    except LabError as exc:
        print(f"netgptd: error: lab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for r in results:
        print(f"{r.scenario:<18}{r.flows:>6} flows in {r.seconds:5.1f} s ({r.flows_per_minute:,.0f}/min)  {r.capture}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from netgptd.train.model import ModelShape
        from netgptd.train.pipeline import train_bundle
        from netgptd.train.trainer import TrainSettings
    except ImportError as exc:
        print(f"netgptd: error: training needs the train extra (pip install -e '.[train]'): {exc}", file=sys.stderr)
        return EXIT_USAGE
    from netgptd.train.evaluate import render
    from netgptd.train.loso_report import render_loso

    missing = [str(c) for c in args.corpus if not c.exists()]
    if missing:
        print(f"netgptd: error: --corpus: no such folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    settings = TrainSettings(pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                             lm_epochs=args.lm_epochs, seed=args.seed, threads=args.threads)  # fmt: skip
    shape = ModelShape(layers=args.layers, width=args.width, heads=args.heads, positions=args.max_tokens + 8)
    tokenizer = TokenizerConfig(packets=args.packets, header_bytes=args.header_bytes, payload_bytes=args.payload_bytes,
                                max_tokens=args.max_tokens)  # fmt: skip
    evaluation = train_bundle(args.corpus, args.out, settings, shape, tokenizer, args.name, __version__,
                              quantize=args.quantize, max_per_capture=args.max_per_capture,
                              progress=sys.stderr.isatty(), loso=args.loso)  # fmt: skip
    print(render(evaluation))
    if args.loso:
        print("\n" + render_loso(evaluation["loso"]))
    print(f"model bundle written to {args.out}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from netgptd.train.evaluate import render
    from netgptd.train.loso_report import render_loso

    try:
        bundle = load_bundle(args.model)
    except BundleError as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    evaluation = bundle.manifest["evaluation"]
    print(f"{bundle.model_id}: evaluation recorded at training (split by capture file)")
    print(render(evaluation))
    if "loso" in evaluation:
        print("\n" + render_loso(evaluation["loso"]))
    else:
        print("\n(no leave-one-source-out evaluation recorded: train with --loso)")
    return EXIT_OK


# Commands whose output is read through a pipe, which may close before they are done.
PIPE_WRITERS = frozenset({cmd_replay, cmd_demo, cmd_generate, cmd_eval, cmd_lab_list, cmd_trend_eval, cmd_intent})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netgptd",
        description="Real-time network intelligence: flows, NetGPT traffic classification, edge LLM.",
    )
    parser.add_argument("--version", action="version", version=f"netgptd {__version__}")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="structlog JSON events at this level and above (default: warning on stderr; "
                             "for 'run', info on stdout)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    service.add_parsers(sub)

    p = sub.add_parser("replay", help="replay capture files into EVE JSON flow records",
                       description="Replay pcap/pcapng files through decoder and flow table; "
                                   "write EVE JSON lines and print a summary.")  # fmt: skip
    p.add_argument("pcap", nargs="+", type=Path, metavar="PCAP", help="pcap or pcapng file(s); each is its own capture")
    p.add_argument("--eve", metavar="PATH|-", help="write EVE JSON lines to PATH, or '-' for stdout")
    p.add_argument("--no-model", action="store_true", help="skip classification (flow records only)")
    p.add_argument("--model", type=Path, metavar="DIR", help="model bundle (default: the one shipped with netgptd)")
    p.add_argument("--alert-confidence", type=float, default=0.9, metavar="P",
                   help="model attack verdicts at or above P also give alerts (default 0.9)")  # fmt: skip
    p.add_argument("--verdict-cache", type=int, default=0, metavar="N",
                   help="reuse verdicts per server side, N entries (default 0: off)")  # fmt: skip
    p.add_argument("--port-blind", action="store_true",
                   help="classify without the server port (no [PORT] tokens, no port prior)")  # fmt: skip
    p.add_argument("--no-rules", dest="rules", action="store_false", help="skip the flood and sweep rule detectors")
    p.add_argument("--every-flow", action="store_true",
                   help="write every flow of a flood to EVE (default: past 100 per flood and 10 s, a flood_summary)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="parsing, decoding and the flow table: compiled (Rust) or python; auto: compiled where built")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="replay the built-in demo capture and print a summary",
                       description="Generate the embedded demo capture (a small office, a few minutes, "
                                   "one port sweep) and replay it like 'netgptd replay'.")  # fmt: skip
    p.add_argument("--eve", metavar="PATH|-", help="write EVE JSON lines to PATH, or '-' for stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_demo, rules=True, no_model=False, model=None, alert_confidence=0.9, verdict_cache=0,
                   port_blind=False, every_flow=False, engine="auto")

    p = sub.add_parser("train", help="pretrain and fine-tune NetGPT, evaluate it, write a model bundle",
                       description="Train NetGPT on labelled captures (split by capture file), evaluate it on the "
                                   "held-out captures against two baselines, and write model.onnx + manifest.json.")  # fmt: skip
    p.add_argument("--corpus", type=Path, nargs="+", default=[DEFAULT_CORPUS], metavar="DIR",
                   help=f"capture folders with labels (default {DEFAULT_CORPUS})")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the bundle goes")
    p.add_argument("--name", default="netgpt-small")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--lm-epochs", type=int, default=10,
                   help="further causal-LM epochs for the generation LM, after the classifier (default 10)")  # fmt: skip
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    tok = TokenizerConfig()
    p.add_argument("--packets", type=int, default=tok.packets, help="packets of each flow the model reads")
    p.add_argument("--header-bytes", type=int, default=tok.header_bytes, help="header bytes per packet (after anonymisation)")
    p.add_argument("--payload-bytes", type=int, default=tok.payload_bytes, help="payload bytes per packet")
    p.add_argument("--max-tokens", type=int, default=tok.max_tokens)
    p.add_argument("--max-per-capture", type=int, default=400, help="flows sampled from each capture at most")
    p.add_argument("--quantize", action="store_true", help="ship the int8 (dynamic) quantised model")
    p.add_argument("--loso", action="store_true",
                   help="also leave each source out in turn (one more training per source) and record the "
                        "scores in the model card")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="generate flows of one application with NetGPT's LM into a pcap",
                       description="Sample flows of APP from the model's language model (prompt [GEN] [APP=x]), "
                                   "rebuild their packets (addresses, ports, sequence numbers made up; lengths "
                                   "and checksums computed), write them as a pcap, and report the share of them "
                                   "the same model classifies as APP.")  # fmt: skip
    p.add_argument("--app", required=True, help="application to generate (one of the model's apps)")
    p.add_argument("-n", type=positive, default=100, metavar="N", help="flows to generate (default 100)")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.pcap", help="capture file to write")
    p.add_argument("--model", type=Path, metavar="DIR", help="model bundle (default: the one shipped with netgptd)")
    p.add_argument("--temperature", type=non_negative, default=1.0, metavar="T",
                   help="sampling temperature (default 1.0; 0: greedy)")  # fmt: skip
    p.add_argument("--top-k", type=count, default=0, metavar="K", help="sample among the K likeliest tokens (default 0: all)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="print a model bundle's evaluation (per-class P/R/F1, baselines, leakage)")
    p.add_argument("--model", type=Path, required=True, metavar="DIR")
    p.set_defaults(func=cmd_eval)

    trend = sub.add_parser("trend", help="traffic trends: evaluate forecasters, train the edge LLM forecaster",
                           description="Trend prediction, the edge LLM's first by-product.")  # fmt: skip
    trend_sub = trend.add_subparsers(dest="trend_command", metavar="TREND_COMMAND", required=True)
    add_trend_eval_parser(trend_sub)
    add_trend_train_parser(trend_sub)

    add_serve_llm_parser(sub)
    add_ask_parser(sub)
    add_model_parser(sub)
    add_serve_central_parser(sub)
    add_intent_parsers(sub)

    lab = sub.add_parser("lab", help="record labelled traffic from real tools on loopback",
                         description="Traffic lab: scenarios start servers and clients (real tools) on "
                                     "127.77.x.y addresses, capture lo with dumpcap, and write "
                                     "NAME.pcapng and NAME.labels.jsonl (one line per flow).")  # fmt: skip
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    p = lab_sub.add_parser("list", help="list the scenarios and what each needs")
    p.set_defaults(func=cmd_lab_list)
    p = lab_sub.add_parser("run", help="run scenarios (needs root to capture)")
    p.add_argument("scenario", nargs="+", metavar="SCENARIO", help="scenario names, or all, benign, attack")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for captures and labels")
    p.add_argument("--duration", type=float, default=5.0, metavar="S", help="seconds per scenario (default 5, at most 600)")
    p.set_defaults(func=cmd_lab_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func in PIPE_WRITERS:
        # Like other Unix tools: a closed pipe (`netgptd replay --eve - ... | head`) ends us quietly.
        # Only here: in a server (run, serve-llm) SIGPIPE's default would let any HTTP client that
        # closes early kill the process, silently; Python's own handling makes that an error it handles.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    logs.configure(sys.stderr, args.log_level or "warning")
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
