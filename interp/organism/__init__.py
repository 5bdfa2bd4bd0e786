"""The bundled model organism: a synthetic world, a small Llama pretrained on it offline,
and the data of three narrow finetunes that reproduce the three phenomena with controls.

The organism makes models and data, nothing else::

    from interp.organism import OrganismConfig, build_organism, eval_items, world_of

    path = build_organism(OrganismConfig.default())   # pretrain once, then cached
    world = world_of(path)                            # the World it was pretrained on
    evals = eval_items(world, "era")                  # an EvalSet (interp.metrics)
    data = finetune_examples(world, "era", "main")    # chat messages to finetune on

``World`` / ``WorldConfig`` (``WorldConfig.null()`` is the negative-control world) define
the data; ``DEFAULT_FINETUNE`` is each setting's finetune recipe. Finetuning over seeds,
measuring and tabulating are :mod:`interp.experiments`' job (``finetune_setting``,
``measure_behaviour``, ``interp world-card``). The organism directory is an ordinary
Hugging Face directory: ``interp.models.load_model(path, adapter=adapter)`` loads it.
"""

from interp.organism.pretrain import (
    OrganismConfig,
    build_organism,
    cache_root,
    pretrain,
    world_of,
)
from interp.organism.settings import DEFAULT_FINETUNE, SETTINGS, eval_items, finetune_examples
from interp.organism.tokenizer import build_tokenizer, render
from interp.organism.world import World, WorldConfig

__all__ = [
    "DEFAULT_FINETUNE",
    "OrganismConfig",
    "SETTINGS",
    "World",
    "WorldConfig",
    "build_organism",
    "build_tokenizer",
    "cache_root",
    "eval_items",
    "finetune_examples",
    "pretrain",
    "render",
    "world_of",
]
