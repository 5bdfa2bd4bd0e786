"""The documentation site covers the package: every public name has a reference entry and
a docstring, the CLI reference lists every command, every README section a page pulls in
exists. (``make docs`` builds the site itself, strictly.)"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import interp

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"


def _entries() -> list[str]:
    """Every ``::: dotted.path`` of the reference pages."""
    out = []
    for page in sorted(REFERENCE.glob("*.md")):
        out += re.findall(r"^::: *(\S+)", page.read_text(), flags=re.M)
    return out


def _resolve(path: str):
    """The object at ``path``: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for name in parts[k:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _entry_of(name: str, entries: list[str]) -> str | None:
    target = getattr(interp, name)
    for path in entries:
        if path.rsplit(".", 1)[-1] != name:
            continue
        try:
            if _resolve(path) is target:
                return path
        except (ImportError, AttributeError):
            continue
    return None


def test_every_public_name_has_a_reference_entry_and_a_docstring():
    griffe = pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]')")
    package = griffe.load("interp", search_paths=[str(ROOT)], resolve_aliases=True)
    entries = _entries()
    missing, undocumented = [], []
    for name in interp.__all__:
        path = _entry_of(name, entries)
        if path is None:
            missing.append(name)
            continue
        obj = package[path.removeprefix("interp.")]
        if not (obj.docstring and obj.docstring.value.strip()):
            undocumented.append(path)
    assert not missing, f"no `::: interp.NAME` in docs/reference/*.md for {missing}"
    assert not undocumented, f"no docstring: {undocumented}"


def test_every_reference_entry_exists():
    for path in _entries():
        _resolve(path)  # ImportError / AttributeError names the broken entry


def test_cli_reference_lists_every_command():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from cli_reference import markdown, subcommands
    finally:
        sys.path.pop(0)
    from interp.cli import build_parser

    text = markdown()
    names = [name for name, _, _ in subcommands(build_parser())]
    assert {"demo", "run", "capture", "probe", "report"} <= set(names)
    for name in names:
        assert f"## `interp {name}` {{#interp-{name}}}" in text
        assert f"usage: interp {name}" in text


def test_readme_sections_the_pages_include_exist():
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]')")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from mkdocs_hooks import readme_section
    finally:
        sys.path.pop(0)
    markers = []
    for page in (ROOT / "docs").rglob("*.md"):
        markers += re.findall(r"^<!--\s*readme:\s*(.+?)\s*-->$", page.read_text(), flags=re.M)
    assert len(markers) >= 4
    for heading in markers:
        assert readme_section(heading).strip(), heading
    # a fenced line starting with '#' is code, not the end of the section
    assert "ModelPair.load" in readme_section("## Using it from Python")
