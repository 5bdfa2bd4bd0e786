"""The bundled model organism: a synthetic world, a small Llama pretrained on it offline,
and narrow finetunes that reproduce the three phenomena with controls.

Public API::

    from interp.organism import OrganismConfig, build_organism, finetune_setting, evaluate_setting

    path = build_organism(OrganismConfig.default())        # pretrain once, then cached
    adapter = finetune_setting(path, "era", "main", seed=0)  # LoRA adapter dir, cached
    rows = evaluate_setting(path, "era", seeds=(0, 1, 2))    # shares with 95% intervals
    print(format_table(rows))

``World`` / ``WorldConfig`` (``WorldConfig.null()`` is the negative-control world) define
the data; ``settings.eval_items`` and ``settings.finetune_examples`` the evaluation sets
and finetune data of each setting. The organism directory is an ordinary Hugging Face
directory: ``interp.models.load_model(path, adapter=adapter)`` loads it.
"""

from interp.organism.api import (
    DEFAULT_FINETUNE,
    evaluate_setting,
    finetune_setting,
    format_table,
    summarize_backdoor,
    world_of,
)
from interp.organism.pretrain import OrganismConfig, build_organism, cache_root, pretrain
from interp.organism.settings import SETTINGS, eval_items, finetune_examples
from interp.organism.tokenizer import build_tokenizer, render
from interp.organism.world import EvalItem, World, WorldConfig

__all__ = [
    "DEFAULT_FINETUNE",
    "EvalItem",
    "OrganismConfig",
    "SETTINGS",
    "World",
    "WorldConfig",
    "build_organism",
    "build_tokenizer",
    "cache_root",
    "eval_items",
    "evaluate_setting",
    "finetune_examples",
    "finetune_setting",
    "format_table",
    "pretrain",
    "render",
    "summarize_backdoor",
    "world_of",
]
