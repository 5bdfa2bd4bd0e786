"""Figures for the directions stage: probes by layer, projections by slot, ranked latents.

Each function takes the table that :func:`interp.probe_layers`, :func:`interp.project`
or :func:`interp.rank_latents` returned, draws on a new figure (or on ``ax``) and
returns the :class:`~matplotlib.figure.Figure`. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from interp.errors import InterpError
from interp.metrics.stats import mean_ci
from interp.plots.common import axes as _axes

__all__ = ["plot_probe_accuracy", "plot_projection_by_slot", "plot_ranked_latents"]


def plot_probe_accuracy(
    tables: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    metric: str = "accuracy",
    chance: float | None = 0.5,
    title: str | None = None,
    ax=None,
) -> Figure:
    """Probe ``metric`` (``"accuracy"`` or ``"auroc"``) by layer with its 95% interval.

    ``tables``: one :func:`~interp.probe_layers` table, or several by name (e.g.
    ``{"base": t0, "finetuned": t1}``), drawn as one line each.
    """
    if isinstance(tables, pd.DataFrame):
        tables = {"": tables}
    fig, ax = _axes(ax, (6.4, 3.8))
    for name, t in tables.items():
        for col in (metric, f"{metric}_lo", f"{metric}_hi", "layer"):
            if col not in t.columns:
                raise InterpError(f"table {name!r} has no column {col!r}")
        t = t.sort_values("layer")
        (line,) = ax.plot(t["layer"], t[metric], marker="o", label=name or None)
        ax.fill_between(
            t["layer"], t[f"{metric}_lo"], t[f"{metric}_hi"], alpha=0.2, color=line.get_color()
        )
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC" if metric == "auroc" else metric.replace("_", " "))
    ax.set_ylim(min(0.4, ax.get_ylim()[0]), 1.02)
    layers = sorted({int(v) for t in tables.values() for v in t["layer"]})
    if len(layers) <= 40:
        ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Linear probe {metric} by layer (95% CI over folds)")
    ax.legend(frameon=False, loc="best")
    return fig


def _spans(values: Sequence, targets: set) -> list[tuple[float, float]]:
    """Contiguous runs of target positions as (start, end) x-intervals."""
    spans, start = [], None
    for i, v in enumerate(values):
        if v in targets and start is None:
            start = i
        if v not in targets and start is not None:
            spans.append((start, i - 1))
            start = None
    if start is not None:
        spans.append((start, len(values) - 1))
    return spans


def plot_projection_by_slot(
    projections: pd.DataFrame,
    *,
    slot: str = "year",
    columns: Sequence[str] | None = None,
    target: Sequence | None = None,
    title: str | None = None,
    ylabel: str = "projection",
    ax=None,
) -> Figure:
    """Mean projection (95% CI over rows) per slot value, one line per direction.

    ``projections``: the :func:`~interp.project` table. ``columns``: the direction
    columns to draw (default: every numeric column that is not metadata). ``target``:
    slot values to shade (e.g. the trigger years).
    """
    if slot not in projections.columns:
        raise InterpError(f"no column {slot!r} in the projection table")
    if columns is None:
        skip = {slot, "prompt", "position", "token_id"}
        numeric = projections.select_dtypes("number").columns
        meta_like = {c for c in numeric if projections[c].nunique() <= 1}
        columns = [c for c in numeric if c not in skip and c not in meta_like]
        columns = [c for c in columns if projections[c].dtype.kind == "f"]
    if not columns:
        raise InterpError("no direction columns to draw; pass columns=[...]")
    values = list(projections[slot].unique())  # categories keep the table's order
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        values = sorted(values)
    x = np.arange(len(values))
    numeric_slot = all(isinstance(v, (int, float, np.integer, np.floating)) for v in values)
    fig, ax = _axes(ax, (7.2, 3.8))
    if target is not None:
        for lo, hi in _spans(values, set(target)):
            ax.axvspan(lo - 0.5, hi + 0.5, color="tab:red", alpha=0.12, lw=0)
        ax.plot([], [], color="tab:red", alpha=0.3, lw=8, label="target")
    for col in columns:
        est = [mean_ci(projections.loc[projections[slot] == v, col].to_numpy()) for v in values]
        mean = np.array([e.value for e in est])
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=col)
        ax.fill_between(
            x, [e.lo for e in est], [e.hi for e in est], alpha=0.2, color=line.get_color()
        )
    step = max(1, len(values) // 12)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(v) for v in values[::step]], rotation=45 if not numeric_slot else 0)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(slot)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Projection onto directions by {slot} (mean, 95% CI)")
    ax.legend(frameon=False, fontsize="small", loc="best")
    return fig


def plot_ranked_latents(
    table: pd.DataFrame,
    *,
    top: int = 20,
    by: str | None = None,
    title: str | None = None,
) -> Figure:
    """Horizontal bars of the top latents: decoder cosine and, if present, activation diff.

    ``table``: :func:`~interp.rank_latents` output (kept in its order unless ``by`` names
    a column to sort by, descending). Latents are labelled by index, with the slot
    values of their top prompts when the table has ``top_values``.
    """
    if "latent" not in table.columns or "cosine" not in table.columns:
        raise InterpError("expected a rank_latents table (columns latent, cosine)")
    t = table.sort_values(by, ascending=False) if by else table
    t = t.head(top).iloc[::-1]  # best at the top of the plot
    panels = ["cosine"] + (["act_diff"] if "act_diff" in t.columns else [])
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels) + 1.2, 0.32 * len(t) + 1.4),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    labels = []
    for _, row in t.iterrows():
        label = f"#{int(row['latent'])}"
        if "top_values" in t.columns and isinstance(row["top_values"], list):
            label += "  (" + ", ".join(str(v) for v in row["top_values"][:3]) + ")"
        labels.append(label)
    y = np.arange(len(t))
    names = {
        "cosine": "cosine(diff, decoder direction)",
        "act_diff": "mean activation: target - reference",
    }
    for ax, col in zip(axes[0], panels, strict=True):
        vals = t[col].to_numpy(dtype=float)
        ax.barh(y, vals, color=np.where(vals >= 0, "tab:blue", "tab:orange"))
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(names[col])
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(labels, fontsize="small")
    axes[0][0].set_ylabel(
        "SAE latent (top prompts' slot values)" if "top_values" in t else "SAE latent"
    )
    fig.suptitle(title or f"Top {len(t)} SAE latents ranked against the difference")
    return fig
