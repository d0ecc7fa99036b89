"""Write docs/reference/cli.md from the parser itself, so the reference cannot drift from the code.

python scripts/cli_reference.py            # rewrite the page
python scripts/cli_reference.py --check    # exit 1 if the page differs from the parser (the tests run this)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from celebae.cli import COMMANDS, build_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md"


def _row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.dest}`"
    default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
    choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
    text = (action.help or "").replace("%%", "%").replace("|", "\\|").replace("\n", " ")
    return f"| {flags} | {default} | {choices} | {text} |"


def reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps usage to the terminal: the page must not depend on it
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [
        "# Command-line reference",
        "",
        "Generated from celebae's parser by `python scripts/cli_reference.py` (the tests check it is current).",
        "Every run setting is also a key of a `--config` TOML file; `celebae COMMAND --help` says the same.",
        "",
        "Global options: `--debug` (show the traceback of any error; also `CELEBAE_DEBUG=1`), `--version`.",
        "",
    ]
    for name in COMMANDS:
        sub = subparsers.choices[name]
        usage = sub.format_usage().strip()
        lines += [f"## `celebae {name}`", "", sub.description or "", "", "```text", usage, "```", ""]
        lines += ["| argument | default | choices | what |", "|---|---|---|---|"]
        shown = [a for a in sub._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
        lines += [_row(a) for a in shown]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = reference()
    if check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} differs from the parser: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
