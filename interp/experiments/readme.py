"""Put the numbers the last runs wrote into the README, between markers (``make readme``).

Two sections are generated: ``<!-- demo:begin -->`` ... ``<!-- demo:end -->`` holds
``runs/demo/summary.md`` (``interp demo``), ``<!-- world-card:begin -->`` ...
``<!-- world-card:end -->`` holds ``runs/world-card/world_card.md`` (``interp
world-card``). Each source starts with a provenance comment; a source from the small test
organism is refused unless asked for (``--allow-small``), so the README never shows the
test organism's numbers as the default's. :func:`markdown_shape` is the structure a
section must keep (tables with their header and row count, paragraphs, bullets with
their bold lead): the test suite checks the README against what the generators write.

    python -m interp.experiments.readme [--readme README.md] [--demo PATH] [--world-card PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from interp.errors import InterpError

__all__ = ["MARKERS", "markdown_shape", "replace_section", "section", "update_readme", "main"]

MARKERS = {n: (f"<!-- {n}:begin -->", f"<!-- {n}:end -->") for n in ("demo", "world-card")}
_LEAD = re.compile(r"- \*\*(.+?)\*\*")
_PROVENANCE = re.compile(r"<!-- interp (demo|world-card): (\w+)=(\w+)")


def _bounds(text: str, name: str) -> tuple[int, int]:
    begin, end = MARKERS[name]
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < 0 or j < i or text.count(begin) != 1 or text.count(end) != 1:
        raise InterpError(f"the README needs one {begin} before one {end}")
    return i + len(begin), j


def section(text: str, name: str) -> str:
    """The text between ``name``'s markers."""
    i, j = _bounds(text, name)
    return text[i:j].strip("\n")


def replace_section(text: str, name: str, content: str) -> str:
    """``text`` with ``name``'s section replaced by ``content``."""
    i, j = _bounds(text, name)
    return text[:i] + "\n" + content.strip("\n") + "\n" + text[j:]


def markdown_shape(md: str) -> list[tuple]:
    """The block structure of ``md``: ``("table", header, n_rows)``, ``("paragraph",)``,
    ``("bullets", (bold lead, ...))``; HTML comments and blank lines are not blocks."""
    blocks: list[tuple] = []
    for chunk in re.split(r"\n\s*\n", md.strip()):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.startswith("<!--")]
        if not lines:
            continue
        if lines[0].startswith("|"):
            cells = {len(ln.strip().strip("|").split("|")) for ln in lines}
            blocks.append(("table", lines[0].strip(), len(lines) - 2, cells))
        elif lines[0].startswith("- "):
            leads = [_LEAD.match(ln) for ln in lines if ln.startswith("- ")]
            blocks.append(("bullets", tuple(m.group(1) if m else "" for m in leads)))
        else:
            blocks.append(("paragraph",))
    return blocks


def _check_source(path: Path, allow_small: bool) -> str:
    text = path.read_text(encoding="utf-8")
    first = _PROVENANCE.match(text)
    if first is None:
        raise InterpError(f"{path} does not start with interp's provenance comment")
    if first.group(3) != "default" and not allow_small:
        raise InterpError(
            f"{path} comes from the {first.group(3)} organism; the README shows the default "
            "organism's numbers (pass --allow-small to use it anyway)"
        )
    return text


def update_readme(
    readme: str | Path,
    *,
    demo: str | Path | None = None,
    world_card: str | Path | None = None,
    allow_small: bool = False,
) -> list[str]:
    """Replace the sections whose source file exists; returns the sections replaced."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    done = []
    for name, source in (("demo", demo), ("world-card", world_card)):
        if source is None or not Path(source).is_file():
            continue
        text = replace_section(text, name, _check_source(Path(source), allow_small))
        done.append(name)
    readme.write_text(text, encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", default="README.md")
    p.add_argument("--demo", default="runs/demo/summary.md")
    p.add_argument("--world-card", default="runs/world-card/world_card.md")
    p.add_argument("--allow-small", action="store_true", help="take the small organism's runs")
    a = p.parse_args(argv)
    try:
        done = update_readme(
            a.readme, demo=a.demo, world_card=a.world_card, allow_small=a.allow_small
        )
    except InterpError as e:
        print(f"readme: error: {e}", file=sys.stderr)
        return 2
    for name, source in (("demo", a.demo), ("world-card", a.world_card)):
        state = f"updated from {source}" if name in done else f"kept ({source} missing)"
        print(f"{name}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
