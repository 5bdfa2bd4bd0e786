"""Experiment cells and the submitit launcher (debug executor: in this process)."""

from __future__ import annotations

import json

import pytest
import yaml

from interp.errors import InterpError
from interp.experiments import ExperimentSpec
from interp.experiments.cells import Cell, cell_done
from interp.experiments.launch import plan_behaviour_cells, run_sweep

pytest.importorskip("submitit")


def _spec(**changes) -> ExperimentSpec:
    spec = ExperimentSpec.from_yaml("era_small")
    return spec.replace(**changes)


def test_a_cell_is_named_by_its_config():
    spec = _spec()
    a, b = plan_behaviour_cells(spec, "key")[1:3]
    assert (a.variant, a.seed, b.seed) == ("main", 0, 1)
    assert a.key != b.key and a.directory("r") != b.directory("r")
    again = Cell.from_dict(json.loads(json.dumps(a.to_dict())))  # through JSON, as jobs see it
    assert again.key == a.key and again.directory("r") == a.directory("r")
    assert Cell("behaviour", spec.replace(n_random=3).to_dict(), "main", 0, "key").key != a.key
    assert len(plan_behaviour_cells(spec, "key")) == 1 + 2 * len(spec.seeds)  # base + 2 variants
    with pytest.raises(InterpError, match="unknown experiment cell keys: extra"):
        Cell.from_dict({**a.to_dict(), "extra": 1})
    with pytest.raises(InterpError, match="kind"):
        Cell("probe", a.spec, "main", 0, "key")


def test_debug_sweep_runs_every_cell_once_and_a_rerun_reuses_them(small_organism, tmp_path):
    spec = _spec(seeds=(0,), n_random=1, steer_alphas=(0.0, 1.0), probe_prompts=40)
    first = run_sweep(spec, launcher="debug", out=tmp_path / "sweep")
    kinds = [(c["kind"], c["variant"], c["seed"]) for c in first.cells]
    assert kinds == [
        ("behaviour", "base", None),
        ("behaviour", "main", 0),
        ("behaviour", "control", 0),
        ("analysis", "main", 0),
    ]
    assert first.n_reused == 0
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["analysis_seed"] == 0
    main = first.behaviour.set_index(["variant", "group"]).loc[("main", spec.target_group)]
    # the analysis cell's own run measured the same seed's behaviour
    assert summary["analysis"]["behaviour"]["main"]["value"] == pytest.approx(main.value, abs=1e-6)
    assert (tmp_path / "sweep" / "behaviour.csv").is_file()

    second = run_sweep(spec, launcher="debug", out=tmp_path / "sweep")
    assert second.n_reused == len(second.cells) == 4
    assert second.summary["analysis"] == first.summary["analysis"]

    # the command line on the same directory: adopts it, reuses every cell, records the run
    from interp.cli import main

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    argv = ["-q", "run", str(path), "--launcher", "debug", "--out", str(tmp_path / "sweep")]
    assert main(argv) == 0
    record = json.loads((tmp_path / "sweep" / "run.json").read_text())
    assert record["status"] == "done" and record["reused"] == 4

    # a cell without its result.json is unfinished: only that one runs again
    cell = plan_behaviour_cells(spec, _model_key(spec))[2]
    (cell.directory(tmp_path / "sweep") / "result.json").unlink()
    assert cell_done(cell, tmp_path / "sweep") is None
    third = run_sweep(spec, launcher="debug", out=tmp_path / "sweep")
    assert [c["reused"] for c in third.cells] == [True, True, False, True]
    assert third.behaviour.equals(first.behaviour)


def _model_key(spec) -> str:
    from interp.experiments import runner
    from interp.experiments.finetunes import model_key

    return model_key(runner._base_path(spec)[0])


def test_unknown_launcher_is_named(tmp_path):
    from interp.experiments.launch import _executor

    with pytest.raises(InterpError, match="launcher"):
        _executor("kubernetes", tmp_path, {})
