"""The package layout follows the flow: each module imports only from its own stage or
from stages above it, never an interp module inside a function (except in ``interp/cli/``,
whose lazy imports keep ``interp --help`` fast), and stays small (a module under 15,000
bytes, a function under 80 lines). Read with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "interp"

# the stages, top to bottom: a module may import its own stage and the stages before it.
# "interp" is the core (the top-level modules: model access, sites, hooks, execution,
# prompts); interp/__init__.py, the public face, re-exports from every stage and is the
# one module not checked; importing it (``import interp``) is for interp/cli/ alone.
STAGES = [
    "interp",
    "interp.backends",
    "interp.record",
    "interp.metrics",
    "interp.directions",
    "interp.causal",
    "interp.plots",
    "interp.report",
    "interp.finetune",
    "interp.organism",
    "interp.scan",
    "interp.experiments",
    "interp.cli",
]
LAZY_OK = "interp.cli"  # may import interp modules inside functions
MAX_BYTES = 15_000
MAX_LINES = 80


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def stage_of(module: str, package: Path = PACKAGE) -> int:
    """The index in STAGES of ``module`` (``interp`` itself: the cli's; see above)."""
    if module == "interp":
        return STAGES.index("interp.cli")
    matches = [i for i, s in enumerate(STAGES) if _in(module, s)]
    stage = max(matches, key=lambda i: len(STAGES[i]))
    if STAGES[stage] == "interp" and module.count(".") > 1:
        raise AssertionError(f"{module}: its folder is no stage; add it to STAGES in order")
    if STAGES[stage] == "interp" and (package / module.split(".")[1]).is_dir():
        raise AssertionError(f"{module}: its folder is no stage; add it to STAGES in order")
    return stage


def _target(node: ast.ImportFrom, alias: str, importer: str, is_package: bool, package: Path):
    """The module an ``from X import alias`` reads: ``X.alias`` when that is a module."""
    base = node.module or ""
    if node.level:
        here = importer.split(".") if is_package else importer.split(".")[:-1]
        here = here[: len(here) - node.level + 1]
        base = ".".join(here + ([node.module] if node.module else []))
    sub = package.parent.joinpath(*f"{base}.{alias}".split("."))
    if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
        return f"{base}.{alias}"
    return base


def interp_imports(tree: ast.Module, importer: str, is_package: bool, package: Path = PACKAGE):
    """``(module, line, inside_a_function)`` for every import of an interp module."""
    out = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                names = [_target(child, a.name, importer, is_package, package) for a in child.names]
            else:
                names = []
            for name in names:
                if _in(name, "interp"):
                    out.append((name, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return out


def problems_of(path: Path, package: Path = PACKAGE) -> list[str]:
    """What ``path`` (a module under ``package``) breaks of the rules above."""
    module = module_name(path, package)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    where = path.relative_to(package.parent)
    out = []
    if len(text.encode()) > MAX_BYTES:
        out.append(
            f"{where}: {len(text.encode())} bytes (over {MAX_BYTES}); split it by what it does"
        )
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_LINES:
                out.append(f"{where}:{node.lineno}: {node.name} is {n} lines (over {MAX_LINES})")
    if module == "interp":
        return out  # the public face re-exports every stage
    mine = stage_of(module, package)
    for name, line, inside in interp_imports(tree, module, path.name == "__init__.py", package):
        theirs = stage_of(name, package)
        if theirs > mine:
            out.append(
                f"{where}:{line}: imports {name} ({STAGES[theirs]}), a later stage than "
                f"{STAGES[mine]}"
            )
        if inside and not _in(module, LAZY_OK):
            out.append(f"{where}:{line}: imports {name} inside a function")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_folder_is_a_stage():
    folders = {module_name(p) for p in MODULES if p.name == "__init__.py"} - {"interp"}
    top = {f for f in folders if f.count(".") == 1}
    assert top <= set(STAGES), f"folders that are no stage: {sorted(top - set(STAGES))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_follows_the_flow(path):
    problems = problems_of(path)
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(tmp_path):
    """Each rule flags a module that breaks it (a copy of the package's layout in tmp)."""
    package = tmp_path / "interp"
    for folder in ("record", "causal", "cli"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("")
    (package / "causal" / "patching.py").write_text("")
    bad = package / "record" / "capture.py"
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    bad.write_text(
        "from interp.causal.patching import patch\n"  # a later stage
        "from interp.models import Model\n"  # an earlier one: fine
        "def f():\n    from interp.models import Model\n"  # inside a function
        "def g():\n" + long_body + "\n"  # MAX_LINES + 1 lines
        "def h():\n    import interp\n"  # the public face
         + "#" * MAX_BYTES + "\n"
    )
    found = problems_of(bad, package)
    assert len(found) == 6, found
    assert "imports interp.causal.patching (interp.causal), a later stage" in found[2]
    assert "over 15000" in found[0] and "g is 81 lines" in found[1]
    assert found[3].endswith("imports interp.models inside a function")
    assert "imports interp (interp.cli)" in found[4] and "inside a function" in found[5]
    lazy = package / "cli" / "run.py"
    lazy.write_text("def f():\n    from interp.causal.patching import patch\n")
    assert problems_of(lazy, package) == []  # the cli imports lazily, from above
