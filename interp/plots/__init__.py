"""Figures from results. Every function takes tables or tensors and returns a
:class:`matplotlib.figure.Figure`; none of them runs a model.

- :mod:`interp.plots.directions`: probe accuracy by layer, projection by slot value,
  ranked SAE latents.
- :mod:`interp.plots.causal`: patching heatmap, dose-response curve with the random band,
  before/after-ablation bars, where a finetune's shift lives (select and held-out halves).
- :mod:`interp.plots.experiments`: summary figures of an experiment run.
"""

from __future__ import annotations

from interp.plots.causal import (
    plot_ablation_bars,
    plot_dose_response,
    plot_patching,
    plot_shift_places,
)
from interp.plots.directions import (
    plot_probe_accuracy,
    plot_projection_by_slot,
    plot_ranked_latents,
)
from interp.plots.experiments import plot_ablation_groups, plot_movement

__all__ = [
    "plot_ablation_bars",
    "plot_ablation_groups",
    "plot_dose_response",
    "plot_movement",
    "plot_patching",
    "plot_probe_accuracy",
    "plot_projection_by_slot",
    "plot_ranked_latents",
    "plot_shift_places",
]
