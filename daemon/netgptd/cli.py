"""The ``netgptd`` command: every user-facing entry point hangs off it."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence, TextIO

from netgptd import __version__, logs
from netgptd.eve import EveWriter
from netgptd.replay import replay
from netgptd.summary import SummaryCollector

EXIT_OK = 0
EXIT_USAGE = 2


def _fanout(*sinks):  # type: ignore[no-untyped-def]
    def sink(event: dict) -> None:
        for each in sinks:
            each(event)

    return sink


def cmd_replay(args: argparse.Namespace) -> int:
    summary = SummaryCollector()
    with ExitStack() as stack:
        sinks = [summary]
        eve_stream: TextIO | None = None
        if args.eve == "-":
            eve_stream = sys.stdout
        elif args.eve:
            try:
                eve_stream = stack.enter_context(open(args.eve, "w", encoding="utf-8"))
            except OSError as exc:
                print(f"netgptd: error: --eve {args.eve}: {exc.strerror}", file=sys.stderr)
                return EXIT_USAGE
        if eve_stream is not None:
            sinks.append(EveWriter(eve_stream).write)
        result = replay(args.pcap, _fanout(*sinks), progress=sys.stderr.isatty() and not args.quiet)
    for message in result.failed_files:
        print(f"netgptd: error: {message}", file=sys.stderr)
    if args.eve != "-" and not args.quiet:
        print(summary.render())
    return EXIT_USAGE if result.failed_files else EXIT_OK


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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(sys.stderr, args.log_level)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
