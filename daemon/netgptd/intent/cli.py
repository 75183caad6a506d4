"""Command-line entry points for intents, to be wired into ``netgptd.cli``:

    from .intent.cli import add_intent_parsers
    add_intent_parsers(sub)          # adds "intent" and "llm"

``netgptd intent "SENTENCE" [--profile FILE.toml] [--model DIR] [--adapter DIR]`` prints one intent per line (JSON);
``netgptd intent eval FILE [--model DIR] [--adapter DIR]`` prints the evaluation report (JSON);
``netgptd llm finetune --pairs FILE.jsonl --out DIR [--base DIR] [--profile FILE.toml] [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_intent(args: argparse.Namespace) -> int:
    from ..llm.runtime import LLMError
    from .engine import EdgeLLM, evaluate, intent_from_text
    from .profile import ProfileError, SiteProfile, load_profile

    words = args.text
    try:
        llm = EdgeLLM.load(args.model, args.adapter, threads=args.threads)
        if len(words) == 2 and words[0] == "eval":
            report = evaluate(Path(words[1]), llm)
            if not args.failures:
                report.pop("failures")
            print(json.dumps(report, indent=1))
            return 0
        profile = load_profile(args.profile) if args.profile else SiteProfile()
        for intent in intent_from_text(" ".join(words), profile, None, llm):
            print(json.dumps(intent, ensure_ascii=True))
        return 0
    except (LLMError, ProfileError, OSError, ValueError) as exc:
        print(f"netgptd intent: {exc}", file=sys.stderr)
        return 2


def cmd_llm_finetune(args: argparse.Namespace) -> int:
    from ..llm.runtime import LLMError
    from .profile import ProfileError, load_profile
    from .train import finetune

    try:
        profile = load_profile(args.profile) if args.profile else None
        info = finetune(args.base, args.pairs, args.out, profile=profile, steps=args.steps)
    except (LLMError, ProfileError, OSError, ValueError, KeyError) as exc:
        print(f"netgptd llm finetune: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


def add_intent_parsers(subparsers: Any) -> None:
    """Add ``intent`` and ``llm`` (with ``llm finetune``) to a ``netgptd`` subparsers object."""
    p = subparsers.add_parser("intent", help="turn an operator sentence into intents (or: intent eval FILE)",
                              description="Turn an operator sentence into schema-valid intents, printed one JSON "
                                          "object per line. 'netgptd intent eval FILE' evaluates on a JSONL file.")  # fmt: skip
    p.add_argument("text", nargs="+", metavar="SENTENCE", help="the sentence (or: eval FILE)")
    p.add_argument("--profile", type=Path, help="site profile (TOML: site, [subnets], [hosts], [periods.NAME], [working_hours])")
    p.add_argument("--model", type=Path, default=None, help="intent model folder (default: the shipped one)")
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (from 'netgptd llm finetune')")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model (default 1)")
    p.add_argument("--failures", action="store_true", help="eval: list the first failures too")
    p.set_defaults(func=cmd_intent)

    llm = subparsers.add_parser("llm", help="the edge LLM: personalise it with a site's own phrasings")
    llm_sub = llm.add_subparsers(dest="llm_command", metavar="LLM_COMMAND", required=True)
    p = llm_sub.add_parser("finetune", help="train a LoRA adapter on (sentence, intents) pairs")
    p.add_argument("--pairs", type=Path, required=True,
                   help='JSONL: {"text": ..., "intents": [{"action", "target": {...}, "window": {"label": ...}}], "profile"?: {...}}')  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="adapter folder to write")
    p.add_argument("--base", type=Path, default=None, help="base model folder (default: the shipped one)")
    p.add_argument("--profile", type=Path, default=None, help="site profile for pairs without their own")
    p.add_argument("--steps", type=int, default=200)
    p.set_defaults(func=cmd_llm_finetune)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone use (``python -m netgptd.intent.cli ...``) until cli.py wires the parsers."""
    parser = argparse.ArgumentParser(prog="netgptd")
    add_intent_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
