"""Summary figures of an experiment run (they read its tables; they run no model)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from interp.plots.causal import plot_ablation_bars
from interp.plots.common import axes

__all__ = ["plot_movement", "plot_ablation_groups"]


def plot_movement(table: pd.DataFrame, *, title: str | None = None, ax=None) -> Figure:
    """Mean projection of the target prompts on a direction, one bar per model.

    ``table``: columns ``model``, ``value``, ``lo``, ``hi`` (95% interval over prompts).
    """
    fig, ax = axes(ax, (1.3 * len(table) + 2.2, 3.4))
    colors = [
        "tab:blue" if m == "base" else "tab:red" if m == "main" else "grey" for m in table.model
    ]
    err = [table.value - table.lo, table.hi - table.value]
    ax.bar(range(len(table)), table.value, yerr=err, capsize=4, color=colors)
    ax.set_xticks(range(len(table)), labels=list(table.model))
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("projection on the direction\n(mean over target prompts, 95% CI)")
    ax.set_title(title or "movement along the direction")
    return fig


def plot_ablation_groups(rows: pd.DataFrame, *, title: str | None = None) -> Figure:
    """One panel of before / ablated / random-control bars per evaluation group."""
    groups = list(dict.fromkeys(rows.group))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), layout="constrained")
    axes = [axes] if len(groups) == 1 else list(axes)
    for ax, g in zip(axes, groups, strict=True):
        plot_ablation_bars(
            rows[rows.group == g].to_dict("records"), metric_label=f"share of {g}", title=g, ax=ax
        )
        ax.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    return fig
