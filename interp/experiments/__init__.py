"""Experiments: one declarative spec per question, one pipeline that finetunes over seeds,
measures, caches and tabulates.

- ``run_experiment("era")`` (a bundled spec, or a YAML file) finetunes, measures behaviour, locates the
  direction, tests it causally and writes tables and figures (:mod:`.runner`);
- ``finetune_setting(organism, "era", "main", seed=0)`` is one organism finetune from the
  one content-keyed cache (:mod:`.finetunes`); ``measure_behaviour`` scores an EvalSet on
  a base model and its finetunes over seeds (:mod:`.behaviour`);
- ``world_card(...)`` measures the organism's table, every setting and control over seeds
  (:mod:`.worldcard`; ``interp world-card``); ``summary_markdown`` writes the demo's table
  and findings (:mod:`.summary`).
"""

from interp.experiments.behaviour import Sampling, measure_behaviour
from interp.experiments.finetunes import Placement, finetune_setting, finetuned
from interp.experiments.runner import ExperimentResult, run_experiment
from interp.experiments.spec import SETTINGS, ExperimentSpec

__all__ = [
    "ExperimentResult",
    "ExperimentSpec",
    "Placement",
    "SETTINGS",
    "Sampling",
    "finetune_setting",
    "finetuned",
    "measure_behaviour",
    "run_experiment",
]
