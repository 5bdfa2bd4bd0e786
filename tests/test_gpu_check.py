"""The prepared device check runs its whole code path on a tiny model on the CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_mode_runs_every_section_and_every_check_passes(gpu_check, tmp_path):
    out = tmp_path / "table.md"
    assert gpu_check.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    checks = {line.split(" | ")[0].removeprefix("| ") for line in rows}
    for expected in (
        "random LoRA off (base view) = model without it",
        "nnsight trace = interp capture (resid_post, every layer, mixed lengths)",
        "interp on the nnsight backend: capture = hooks",
        "interp on the nnsight backend: steering = hooks",
        "split: capture = one-device run",
        "split: steer = one-device run",
        "split: patch = one-device run",
    ):
        assert expected in checks
    assert not any(line.endswith("| FAIL |") for line in rows), text
    assert sum(line.endswith("| pass |") for line in rows) >= 8


def test_without_cuda_it_says_so_and_exits_0(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "none.md"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not out.exists()
