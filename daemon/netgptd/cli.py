"""The ``netgptd`` command: every user-facing entry point hangs off it."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from netgptd import __version__, logs
from netgptd.lab import runner
from netgptd.lab.safety import LabError
from netgptd.plugin_host import PluginError, PluginHost
from netgptd.replay import replay
from netgptd.synth.demo import write_demo_capture
from netgptd.summary import SummaryCollector

EXIT_OK = 0
EXIT_USAGE = 2


def cmd_replay(args: argparse.Namespace) -> int:
    summary = SummaryCollector()
    enabled: dict[str, dict] = {}
    if args.rules:
        enabled["rules"] = {}
    if args.eve:
        enabled["eve"] = {"path": args.eve, "append": False}
    try:
        plugins = PluginHost(enabled)
    except PluginError as exc:
        print(f"netgptd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plugins.add(summary, "summary")
    try:
        result = replay(args.pcap, plugins.emit, progress=sys.stderr.isatty() and not args.quiet)
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


def cmd_lab_list(args: argparse.Namespace) -> int:
    for name, s in runner.scenarios().items():
        missing = runner.missing_requirements(s)
        note = f"  (needs {', '.join(missing)})" if missing else ""
        print(f"{name:<18}{s.kind:<8}{s.summary}{note}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netgptd",
        description="Real-time network intelligence: flows, NetGPT traffic classification, edge LLM.",
    )
    parser.add_argument("--version", action="version", version=f"netgptd {__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("replay", help="replay capture files into EVE JSON flow records",
                       description="Replay pcap/pcapng files through decoder and flow table; "
                                   "write EVE JSON lines and print a summary.")  # fmt: skip
    p.add_argument("pcap", nargs="+", type=Path, metavar="PCAP", help="pcap or pcapng file(s); each is its own capture")
    p.add_argument("--eve", metavar="PATH|-", help="write EVE JSON lines to PATH, or '-' for stdout")
    p.add_argument("--no-model", action="store_true", help="skip classification (flow records only)")
    p.add_argument("--no-rules", dest="rules", action="store_false", help="skip the flood and sweep rule detectors")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="replay the built-in demo capture and print a summary",
                       description="Generate the embedded demo capture (a small office, a few minutes, "
                                   "one port sweep) and replay it like 'netgptd replay'.")  # fmt: skip
    p.add_argument("--eve", metavar="PATH|-", help="write EVE JSON lines to PATH, or '-' for stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_demo, rules=True)

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
    # Like other Unix tools: a closed pipe (`netgptd replay --eve - ... | head`) ends us quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    logs.configure(sys.stderr, args.log_level)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
