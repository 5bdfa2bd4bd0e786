"""mkdocs hooks of the interp docs (``hooks:`` in ``mkdocs.yml``).

- ``<!-- readme: HEADING -->`` in a page becomes that section of ``README.md`` (up to the
  next heading of the same or a higher level), so the README stays the one source of the
  set-up steps, the demo's measured table and the world card;
- ``<!-- cli-reference -->`` becomes the command-line reference generated from the
  argparse parsers (``tools/cli_reference.py``);
- the notebooks of ``notebooks/`` (the paired ``.ipynb``, without outputs) become pages
  under ``notebooks/``, and ``figures/*.png`` files under ``figures/``, without copies in
  ``docs/``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
_README = re.compile(r"^<!--\s*readme:\s*(.+?)\s*-->$", re.M)
_CLI = "<!-- cli-reference -->"
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def readme_section(heading: str, path: Path = ROOT / "README.md") -> str:
    """The body of the README section titled ``heading`` (e.g. ``## The world card ...``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    fence = False
    start = None
    body: list[str] = []
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^(#+) ", line)
        if start is None:
            if not fence and line.strip() == heading:
                start = True
            continue
        if m and len(m.group(1)) <= level:
            break
        body.append(line)
    if start is None:
        raise PluginError(f"README.md has no heading {heading!r}")
    return "\n".join(body).strip() + "\n"


def on_config(config):
    # the CLI reference imports this checkout's interp, whatever else is installed (mkdocs
    # restores sys.path after importing a hook module, so this happens here)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


@event_priority(100)  # before mkdocs-jupyter wraps the notebook files
def on_files(files, config):
    # files of the repository root under their own paths (a File with a real src_dir:
    # mkdocs-jupyter's wrapper loses the path of a File.generated one)
    paths = sorted(ROOT.glob("notebooks/[0-9]*.ipynb")) + sorted(ROOT.glob("figures/*.png"))
    for path in paths:
        uri = path.relative_to(ROOT).as_posix()
        files.append(File(uri, str(ROOT), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = _README.sub(lambda m: readme_section(m.group(1)), markdown)
    if _CLI in markdown:
        sys.path.insert(0, str(ROOT / "tools"))
        try:
            from cli_reference import markdown as cli_markdown
        finally:
            sys.path.pop(0)
        markdown = markdown.replace(_CLI, cli_markdown())
    return markdown


def on_page_content(html, page, config, files):
    # docstrings use Sphinx roles (:func:`x`, :class:`~a.b.C`); the Markdown renderer
    # leaves the role's name in front of the code span: drop it, and show ~a.b.C as C
    return _ROLE.sub(lambda m: f"<code>{m[2].split('.')[-1] if m[1] else m[2]}</code>", html)
