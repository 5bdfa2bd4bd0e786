"""The command-line reference as Markdown, generated from ``interp.cli``'s argparse parsers.

``python tools/cli_reference.py`` prints it; the docs hook (``tools/mkdocs_hooks.py``)
puts it into ``docs/cli.md`` at build time, so the page always matches ``--help``.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["markdown", "subcommands"]

WIDTH = "96"  # argparse wraps help at $COLUMNS


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of every subcommand, in ``--help`` order."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in action.choices.items()]


def _help(parser: argparse.ArgumentParser) -> str:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return parser.format_help().rstrip()
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def markdown(heading_level: int = 2) -> str:
    from interp.cli import build_parser

    parser = build_parser()
    h = "#" * heading_level
    commands = subcommands(parser)
    out = ["| command | what it does |", "|---|---|"]
    out += [f"| [`interp {name}`](#interp-{name}) | {text} |" for name, text, _ in commands]
    out += ["", f"{h} `interp`", "", "```text", _help(parser), "```", ""]
    for name, text, sub in commands:
        out += [f"{h} `interp {name}` {{#interp-{name}}}", "", f"{text[:1].upper()}{text[1:]}.", ""]
        out += ["```text", _help(sub), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown())
