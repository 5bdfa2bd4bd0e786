"""The built wheel holds the bundled specs and its command line runs from outside the
repository, in a fresh virtual environment (``tools/wheel_check.py``; minutes: slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "wheel_check.py"


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository():
    done = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the 9 specs among them" in done.stdout and "wheel check passed" in done.stdout
