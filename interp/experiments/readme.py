"""Put the numbers the last runs wrote into the README, between markers (``make readme``).

Five sections are generated, each between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` (:data:`SOURCES`): ``demo`` holds ``runs/demo/summary.md``
(``interp demo``), ``world-card`` holds ``runs/world-card/world_card.md`` (``interp
world-card``), ``lora-sweep`` holds ``runs/lora-sweep/lora_sweep.md`` (``python -m
interp.experiments.lora_sweep``), ``demo-lora`` holds ``runs/demo-lora/summary.md``
(``interp demo --finetune lora``) and ``bench-scan`` holds ``runs/bench_scan/summary.md``
(``benchmarks/bench_scan.py``, the trigger scan on its planted zoo). Each source starts
with a provenance comment; a source from the small test organism is refused unless asked
for (``--allow-small``), so the README never shows the test organism's numbers as the
default's. :func:`markdown_shape` is the structure a section must keep (tables with their
header and row count, paragraphs, bullets with their bold lead): the test suite checks
the README against what the generators write.

    python -m interp.experiments.readme [--readme README.md] [--demo PATH] [--world-card PATH]
        [--lora-sweep PATH] [--demo-lora PATH] [--bench-scan PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from interp.errors import InterpError

__all__ = [
    "MARKERS",
    "SOURCES",
    "markdown_shape",
    "replace_section",
    "section",
    "update_readme",
    "main",
]

SOURCES = {
    "demo": "runs/demo/summary.md",
    "world-card": "runs/world-card/world_card.md",
    "lora-sweep": "runs/lora-sweep/lora_sweep.md",
    "demo-lora": "runs/demo-lora/summary.md",
    "bench-scan": "runs/bench_scan/summary.md",
}
MARKERS = {n: (f"<!-- {n}:begin -->", f"<!-- {n}:end -->") for n in SOURCES}
_LEAD = re.compile(r"- \*\*(.+?)\*\*")
_PROVENANCE = re.compile(r"<!-- interp (demo|world-card|lora-sweep|bench-scan): (\w+)=(\w+)")


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


def _kind_of(text: str) -> str:
    """The section a source belongs in, from its provenance comment."""
    first = text.splitlines()[0]
    if first.startswith("<!-- interp demo:"):
        return "demo-lora" if " finetune=lora " in first else "demo"
    return first.removeprefix("<!-- interp ").split(":")[0]


def update_readme(
    readme: str | Path,
    *,
    demo: str | Path | None = None,
    world_card: str | Path | None = None,
    lora_sweep: str | Path | None = None,
    demo_lora: str | Path | None = None,
    bench_scan: str | Path | None = None,
    allow_small: bool = False,
) -> list[str]:
    """Replace the sections whose source file exists; returns the sections replaced. A
    source made for another section (a LoRA demo's summary for the demo's) is an error."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    done = []
    given = {"demo": demo, "world-card": world_card, "lora-sweep": lora_sweep,
             "demo-lora": demo_lora, "bench-scan": bench_scan}  # fmt: skip
    for name, source in given.items():
        if source is None or not Path(source).is_file():
            continue
        content = _check_source(Path(source), allow_small)
        if _kind_of(content) != name:
            raise InterpError(f"{source} holds the {_kind_of(content)} section, not {name}")
        text = replace_section(text, name, content)
        done.append(name)
    readme.write_text(text, encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", default="README.md")
    for name, default in SOURCES.items():
        p.add_argument(
            f"--{name}", default=default, help=f"the {name} section (default: {default})"
        )
    p.add_argument("--allow-small", action="store_true", help="take the small organism's runs")
    a = p.parse_args(argv)
    sources = {name: getattr(a, name.replace("-", "_")) for name in SOURCES}
    try:
        done = update_readme(
            a.readme, **{k.replace("-", "_"): v for k, v in sources.items()},
            allow_small=a.allow_small,
        )  # fmt: skip
    except InterpError as e:
        print(f"readme: error: {e}", file=sys.stderr)
        return 2
    for name, source in sources.items():
        state = f"updated from {source}" if name in done else f"kept ({source} missing)"
        print(f"{name}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
