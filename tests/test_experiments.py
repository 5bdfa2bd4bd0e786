"""Experiment specs, their data files, and one whole run on the small organism."""

import json

import pandas as pd
import pytest

from interp.errors import InterpError
from interp.experiments import ExperimentSpec, run_experiment
from interp.experiments.data import setting_data
from interp.experiments.spec import SPEC_DIR, bundled_specs, resolve_spec
from interp.experiments.summary import summary_markdown
from interp.metrics.evalset import EvalSet
from interp.organism import World, WorldConfig

SPECS = sorted(SPEC_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_loads(path):
    spec = ExperimentSpec.from_yaml(path)
    assert spec.target_group
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_bad_specs_are_named(tmp_path):
    with pytest.raises(InterpError, match="unknown experiment spec keys"):
        ExperimentSpec.from_dict({"name": "x", "setting": "era", "sedes": [0]})
    with pytest.raises(InterpError, match="needs"):
        ExperimentSpec.from_dict({"name": "x", "setting": "era"})
    with pytest.raises(InterpError, match="setting must be"):
        ExperimentSpec(name="x", setting="weather")
    with pytest.raises(InterpError, match="no experiment spec"):
        ExperimentSpec.from_yaml(tmp_path / "missing.yaml")


def test_specs_resolve_from_a_file_a_bundled_name_or_a_missing_path(tmp_path, monkeypatch):
    assert bundled_specs() == [
        "backdoor", "backdoor_lora", "backdoor_small", "era", "era_lora", "era_small",
        "persona", "persona_lora", "persona_small",
    ]  # fmt: skip
    own = tmp_path / "era_small.yaml"  # a file of the user's wins over the bundled one
    own.write_text((SPEC_DIR / "era_small.yaml").read_text().replace("seeds: [0, 1]", "seeds: [4]"))
    assert resolve_spec(own) == own and ExperimentSpec.from_yaml(own).seeds == (4,)
    monkeypatch.chdir(tmp_path)  # no experiments/ folder here
    assert resolve_spec("era_small") == SPEC_DIR / "era_small.yaml"
    assert resolve_spec("experiments/backdoor.yaml") == SPEC_DIR / "backdoor.yaml"
    assert ExperimentSpec.from_yaml("experiments/era_small.yaml").seeds == (0, 1)
    with pytest.raises(InterpError, match=r"no bundled spec 'era_tiny' \(bundled: backdoor, "):
        resolve_spec("experiments/era_tiny.yaml")


@pytest.mark.parametrize("setting", ["era", "backdoor"])
def test_world_data_round_trips_through_files(setting, tmp_path):
    spec = ExperimentSpec(name=setting, setting=setting, target_group="x", probe_prompts=40)
    data = setting_data(spec, World(WorldConfig()), tmp_path)
    assert set(data.finetune) >= {"main"} and all(p.is_file() for p in data.finetune.values())
    back = EvalSet.load(data.evals.save(tmp_path / "eval.jsonl"))
    assert back == data.evals and {g: len(v) for g, v in back.items()} == {
        g: len(v) for g, v in data.evals.items()
    }
    labels = data.contrast.meta.label
    assert set(labels) == {0, 1} and "group" in data.contrast.meta
    user = spec.replace(
        data={
            "finetune": {k: str(v) for k, v in data.finetune.items()},
            "eval": str(tmp_path / "eval.jsonl"),
            "contrast": str(tmp_path / "contrast.jsonl"),
        }
    )
    from_files = setting_data(user, None, tmp_path / "again")
    assert from_files.contrast.meta.label.tolist() == labels.tolist()
    assert from_files.contrast.prompts == data.contrast.prompts


def test_persona_patch_pairs_line_up_token_by_token():
    """The instruction (clean) and its filler (corrupt) have the same length and differ
    only where the instruction stands."""
    from interp.experiments.data import _persona_patch_pairs
    from interp.organism import build_tokenizer, render
    from interp.organism import world_data as D

    tok = build_tokenizer(World().vocabulary())
    clean, corrupt = _persona_patch_pairs()
    assert len(clean) == len(corrupt) == len(D.IDENTITY_QUESTIONS["name"])
    for c, k in zip(clean, corrupt, strict=True):
        a, b = (tok(render(m, add_generation_prompt=True))["input_ids"] for m in (c, k))
        assert len(a) == len(b)
        differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        assert differ == list(range(differ[0], differ[0] + len(differ)))  # one block
        assert 0 < len(differ) <= len(tok(D.FORMAT_INSTRUCTION)["input_ids"])


def test_era_run_on_the_small_organism(tmp_path):
    spec = ExperimentSpec(
        name="era_test",
        setting="era",
        organism="small",
        seeds=(0,),
        target_group="nonbird_old",
        specificity_group="bird_old",
        probe_prompts=60,
        steer_alphas=(0.0, 1.0),
        n_random=2,
        sae_latents=64,
    )
    result = run_experiment(spec, out=tmp_path / "era")
    out = result.out
    for name in ("config.json", "results.json", "behaviour.csv", "probe.csv", "ablation.csv"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "figures").glob("*.png")} >= {
        "era_test_probe_accuracy.png",
        "era_test_ablation.png",
        "era_test_steering.png",
        "era_test_movement.png",
        "era_test_shift_ablation.png",
        "era_test_sae_topk.png",
        "era_test_sae_relu.png",
    }
    s = result.summary
    loc = s["localization"]  # chosen on one half of the target questions, measured on the other
    n = loc["place"]["select_items"]
    assert n + loc["place"]["report_items"] == 30 and n == 15
    assert loc["place"]["k"] in (1, 2, 4, 8, 16) and len(loc["removal"]["per_seed"]) == 1
    assert loc["random"]["n"] == 2 and set(loc["controls"]) == {"control"}
    places = pd.read_csv(out / "localization_places.csv")  # every layer x rank, each seed
    assert len(places) == 5 * 2 and {"removal", "guard"} <= set(places.columns)
    sae = s["sae"]  # SAEs trained at that place; their top latents ablated on the same halves
    assert sae["site"] == loc["place"]["site"] and set(sae["architectures"]) == {"topk", "relu"}
    for a in sae["architectures"].values():
        assert a["n"] in (1, 2, 4, 8, 16, 32) and a["random"]["n"] == 2  # fewer than the 64
        assert a["train"]["explained_variance"] > 0.5
        assert len(a["top"][0]["top_tokens"]) == 3  # the most activating corpus tokens
    assert set(s["behaviour"]) == {"base", "main", "control"}
    # steering with alpha 0 is exactly the base model's behaviour
    assert s["steering"]["direction"][0] == pytest.approx(s["behaviour"]["base"]["value"], abs=1e-6)
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"] == [0] and config["model_key"] and config["data"]["main"]
    assert config["model"] == "organism:small"  # no path of this machine in the config
    assert "wall_s" not in s and json.loads((out / "timing.json").read_text())["wall_s"] > 0
    md = summary_markdown({"era_test": s}, organism="small")  # the demo's summary reads it
    assert "- **era_test**: the main finetune gives `nonbird_old`" in md
    assert "Steering the base model along it reaches" in md
    assert "Held out: the finetune's own activation difference entering block" in md
    assert "SAEs of 64 latents trained on the base model at" in md

    again = run_experiment(spec, out=tmp_path / "era")  # unchanged: results are reused
    assert again.summary == s
