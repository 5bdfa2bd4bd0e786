"""Experiments: one declarative spec per question, one runner that walks the flow.

``run_experiment("experiments/era.yaml")`` finetunes, measures behaviour, locates the
direction, tests it causally and writes tables and figures (see
:mod:`interp.experiments.runner`).
"""

from interp.experiments.runner import ExperimentResult, run_experiment
from interp.experiments.spec import SETTINGS, ExperimentSpec

__all__ = ["ExperimentResult", "ExperimentSpec", "SETTINGS", "run_experiment"]
