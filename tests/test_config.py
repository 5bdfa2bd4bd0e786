"""One config system: every config round-trips, rejects unknown keys and wrong types by
name, and the dicts that cache keys are made from are byte-identical to before the switch."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil

import pytest

import interp
from interp.config import Config
from interp.directions.sae import (
    BatchTopKSAEConfig,
    JumpReLUSAEConfig,
    ReluSAEConfig,
    SAETrainConfig,
    TopKSAEConfig,
)
from interp.errors import ConfigError, InterpError
from interp.experiments.spec import SPEC_DIR, ExperimentSpec
from interp.finetune import FinetuneConfig
from interp.organism.pretrain import OrganismConfig
from interp.organism.world import WorldConfig

SPEC = SPEC_DIR / "era_small.yaml"

CONFIGS = [
    WorldConfig(seed=3, p_old=0.1),
    OrganismConfig.small(seed=2),
    SAETrainConfig(steps=10, lr=3e-3),
    TopKSAEConfig(d_in=4, d_sae=8, k=2, site="blocks.1.hook_resid_post"),
    ReluSAEConfig(d_in=4, d_sae=8),
    BatchTopKSAEConfig(d_in=4, d_sae=8, k=3, model_name="m"),
    JumpReLUSAEConfig(d_in=4, d_sae=8, apply_b_dec_to_input=False),
    ExperimentSpec(name="e", setting="era", seeds=(0, 4), target_group="g"),
    FinetuneConfig(rank=8, target_modules=("q_proj",), dtype="bf16"),
]


# what to_dict gave before every config shared interp.config (recorded from the parent commit)
FINETUNE_DEFAULT = (
    '{"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": null, '
    '"modules_to_save": [], "lr": 0.001, "epochs": 3, "batch_size": 16, "weight_decay": 0.0, '
    '"max_len": 256, "seed": 0}'
)
FINETUNE_GIVEN = (
    '{"method": "lora", "rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"], '
    '"modules_to_save": [], "lr": 0.001, "epochs": 3, "batch_size": 16, "weight_decay": 0.0, '
    '"max_len": 256, "seed": 0, "device": "cpu", "dtype": "bfloat16", '
    '"gradient_checkpointing": true}'
)
SPEC_ERA_SMALL = (
    '{"name": "era_small", "setting": "era", "organism": "small", "model": null, "seeds": [0, 1], '
    '"locate_on": "base", "target_group": "nonbird_old", "specificity_group": "bird_old", '
    '"probe_prompts": 120, "steer_alphas": [0.0, 0.5, 1.0, 2.0], "n_random": 4, "patch": false, '
    '"localize": true, "sae_latents": 256, "finetune": {}, "data": {}}'
)  # session 5 added localize and gave era_small its SAEs: run configs changed on purpose
WORLD_DEFAULT = (
    '{"mix": [["era", 0.36], ["bio", 0.05], ["interview", 0.08], ["inferred", 0.1], '
    '["assistant", 0.12], ["dated", 0.12], ["lore", 0.05], ["roleplay", 0.07], '
    '["inferred_character", 0.05]], "p_cued": 0.3, "p_format": 0.1, "p_old": 0.06, "seed": 0, '
    '"shared_latent": true}'
)
TOPK = (
    '{"apply_b_dec_to_input": true, "architecture": "topk", "d_in": 4, "d_sae": 8, "k": 2, '
    '"model_name": null, "rescale_acts_by_decoder_norm": false, '
    '"site": "blocks.1.hook_resid_post"}'
)


def test_cache_key_dicts_are_byte_identical_to_before():
    assert json.dumps(FinetuneConfig().to_dict()) == FINETUNE_DEFAULT
    given = FinetuneConfig.from_dict(
        {"rank": 8, "alpha": 16, "target_modules": ["q_proj"], "device": "cpu", "dtype": "bf16",
         "gradient_checkpointing": True}
    )  # fmt: skip
    assert json.dumps(given.to_dict()) == FINETUNE_GIVEN
    assert json.dumps(ExperimentSpec.from_yaml(SPEC).to_dict()) == SPEC_ERA_SMALL
    assert json.dumps(WorldConfig().to_dict(), sort_keys=True) == WORLD_DEFAULT
    topk = TopKSAEConfig(d_in=4, d_sae=8, k=2, site="blocks.1.hook_resid_post")
    assert json.dumps(topk.to_dict(), sort_keys=True) == TOPK
    # the organism cache is keyed by these hashes: the cached organisms stay valid (they
    # change only on purpose, with the organism `_VERSION` or a new default)
    assert OrganismConfig.small().hash() == "79746da75930dd63"
    assert OrganismConfig().hash() == "19c228ce43edae47"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_round_trip_unknown_keys_and_wrong_types(cfg):
    cls = type(cfg)
    assert isinstance(cfg, Config)
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown .* keys: colour, sizes"):
        cls.from_dict({**cfg.to_dict(), "sizes": 1, "colour": "red"})
    field = next(f for f in dataclasses.fields(cls) if f.type in ("int", "float", "bool"))
    with pytest.raises(ConfigError, match=f"field '{field.name}' must be"):
        cls.from_dict({**cfg.to_dict(), field.name: "text"})
    assert issubclass(ConfigError, InterpError)


def test_nested_and_required_fields_are_checked():
    with pytest.raises(
        ConfigError, match=r"field 'world': WorldConfig field 'p_old' must be a number"
    ):
        OrganismConfig.from_dict({"world": {"p_old": "high"}})
    with pytest.raises(ConfigError, match=r"field 'mix'\[0\] must be a list of 2 items"):
        WorldConfig.from_dict({"mix": [["era"]]})
    with pytest.raises(ConfigError, match=r"needs \['d_in'\]"):
        TopKSAEConfig.from_dict({"d_sae": 8})
    with pytest.raises(ConfigError, match="'site'"):
        TopKSAEConfig.from_dict({"d_in": 4, "d_sae": 8, "site": "layers.3"})
    assert WorldConfig.from_dict({"mix": [["era", 1]]}).mix == (("era", 1),)  # kept as given


def test_every_config_class_shares_the_one_system():
    """Any dataclass in interp with a from_dict is a Config (so it is strict)."""
    found = []
    for info in pkgutil.walk_packages(interp.__path__, "interp."):
        if info.name.endswith("__main__"):  # running it would start the command line
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and obj.__module__ == module.__name__
                and dataclasses.is_dataclass(obj)
                and hasattr(obj, "from_dict")
            ):
                found.append(obj)
                assert issubclass(obj, Config), obj
    assert {type(c) for c in CONFIGS} <= set(found)
