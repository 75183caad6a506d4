"""Command-line entry points for intents, to be wired into ``netgptd.cli``:

    from .intent.cli import add_intent_parsers
    add_intent_parsers(sub)          # adds "intent" and "llm"

``netgptd intent "TEXT" [--profile FILE.toml] [--model DIR]`` prints one intent per line (JSON), what it did not
understand on stderr; ``netgptd intent eval FILE [--model DIR]`` prints the model's and the keyword baseline's scores
(JSON); ``netgptd llm finetune --pairs FILE.jsonl --out DIR [--base DIR] [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_intent(args: argparse.Namespace) -> int:
    from .engine import evaluate, understand_text
    from .minilm import EncoderUnavailable
    from .nlu import ActionModel, NLUError
    from .profile import ProfileError, load_profile

    words = args.text
    try:
        model = ActionModel.load(args.model)
        if len(words) == 2 and words[0] == "eval":
            report = evaluate(Path(words[1]), model)
            if not args.failures:
                for side in ("model", "keyword_baseline"):
                    report[side].pop("failures")
            print(json.dumps(report, indent=1))
            return 0
        profile = load_profile(args.profile) if args.profile else None
        result = understand_text(" ".join(words), profile, None, model)
    except (EncoderUnavailable, NLUError, ProfileError, OSError, ValueError) as exc:
        print(f"netgptd intent: {exc}", file=sys.stderr)
        return 2
    for intent in result.intents:
        print(json.dumps(intent, ensure_ascii=True))
    for line in result.not_understood:
        print(f"netgptd intent: not understood: {line}", file=sys.stderr)
    return 0 if result.intents else 1


def cmd_llm_finetune(args: argparse.Namespace) -> int:
    from .minilm import EncoderUnavailable
    from .nlu import NLUError

    try:
        from .nlu_train import finetune

        info = finetune(args.base, args.pairs, args.out, steps=args.steps)
    except (EncoderUnavailable, NLUError, OSError, ValueError, ImportError) as exc:
        print(f"netgptd llm finetune: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


def add_intent_parsers(subparsers: Any) -> None:
    """Add ``intent`` and ``llm`` (with ``llm finetune``) to a ``netgptd`` subparsers object."""
    p = subparsers.add_parser("intent", help="turn an operator sentence into intents (or: intent eval FILE)",
                              description="Turn an operator's text into schema-valid intents, printed one JSON object "
                                          "per line; what yields none is said on stderr ('not understood: ...') and "
                                          "the exit status is 1 when nothing was understood. 'netgptd intent eval "
                                          "FILE' scores the model and a keyword baseline on a JSONL file.")  # fmt: skip
    p.add_argument("text", nargs="+", metavar="SENTENCE", help="the sentence (or: eval FILE)")
    p.add_argument("--profile", type=Path, help="site profile (TOML: site, [subnets], [hosts], [periods.NAME], [working_hours])")
    p.add_argument("--model", type=Path, default=None, help="intent model folder (default: the shipped one; a site's "
                                                              "own from 'netgptd llm finetune')")
    p.add_argument("--failures", action="store_true", help="eval: list the first failures too")
    p.set_defaults(func=cmd_intent)

    llm = subparsers.add_parser("llm", help="the intent model: personalise it with a site's own phrasings")
    llm_sub = llm.add_subparsers(dest="llm_command", metavar="LLM_COMMAND", required=True)
    p = llm_sub.add_parser("finetune", help="train the intent model's LoRA and head on a site's own phrasings")
    p.add_argument("--pairs", type=Path, required=True,
                   help='JSONL: {"text": "a phrase of this site", "label": "block"} (an action, or context, negated, '
                        'question, other)')  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="model folder to write (use it with --model / intent_model_dir)")
    p.add_argument("--base", type=Path, default=None, help="model folder to start from (default: the shipped one)")
    p.add_argument("--steps", type=int, default=150)
    p.set_defaults(func=cmd_llm_finetune)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone use (``python -m netgptd.intent.cli ...``) until cli.py wires the parsers."""
    parser = argparse.ArgumentParser(prog="netgptd")
    add_intent_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
