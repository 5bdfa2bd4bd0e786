"""Every notebook runs top to bottom, and its .ipynb is in sync with its .py source.

The notebooks live in ``notebooks/`` as jupytext percent-format ``.py`` files (what
reviewers read) paired with ``.ipynb`` files without outputs (what Jupyter opens).
After editing a ``.py`` source, regenerate its pair with::

    .venv/bin/jupytext --to ipynb notebooks/[0-9]*.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SYNC = ".venv/bin/jupytext --to ipynb notebooks/"
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9]*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_and_stripped(source):
    import jupytext
    import nbformat

    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"run `{SYNC} {source.name}` to write {paired.name}"
    nb = nbformat.read(paired, as_version=4)
    assert _cells(nb) == _cells(jupytext.read(source)), (
        f"{paired.name} is out of date: `{SYNC} {source.name}`"
    )
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(source, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(source)
    env_before = os.environ.get("INTERP_NOTEBOOK_OUT")
    os.environ["INTERP_NOTEBOOK_OUT"] = str(tmp_path)
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(source.parent)}},
        ).execute()
    finally:
        if env_before is None:
            os.environ.pop("INTERP_NOTEBOOK_OUT", None)
        else:
            os.environ["INTERP_NOTEBOOK_OUT"] = env_before
