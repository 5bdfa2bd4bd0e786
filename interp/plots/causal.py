"""Figures for the causal stage: patching heatmaps, dose-response curves, ablation bars.

Each function takes what :func:`interp.causal.patching.patch`, :func:`interp.causal.dose.dose_response`
or :func:`interp.causal.dose.ablation_effect` returned (or the same as a table), draws on a new
figure (or on ``ax``) and returns the :class:`~matplotlib.figure.Figure`. Nothing here
runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from interp.causal.shift import pooled_removal
from interp.errors import InterpError
from interp.plots.common import axes as _axes
from interp.sites import of_kind, site_kinds

__all__ = ["plot_patching", "plot_dose_response", "plot_ablation_bars"]


def plot_patching(
    result,
    *,
    kind: str | None = None,
    normalized: bool = True,
    title: str | None = None,
    ax=None,
) -> Figure:
    """Heatmap of a :class:`~interp.causal.patching.PatchResult`'s aligned aggregate: layer x
    column, labelled with the column's position and its token (``*`` where pairs differ),
    and with ``(k/n)`` where only k of the n pairs have that column (it averages those k).

    ``kind``: which site kind to draw (default: the first in the result).
    ``normalized``: show ``(value - corrupt) / (clean - corrupt)`` instead of raw values.
    """
    kind = kind or site_kinds(result.sites)[0]
    rows, layers = of_kind(result.sites, kind)
    data = (result.normalized() if normalized else result.values)[rows].numpy()
    n_pos = data.shape[1]
    fig, ax = _axes(ax, (max(4.0, 0.35 * n_pos + 2.0), max(2.5, 0.3 * len(layers) + 1.5)))
    lim = float(np.nanmax(np.abs(data))) or 1.0
    im = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
    n_pairs = len(result.per_prompt) if result.per_prompt else max(result.counts, default=0)
    labels = [
        f"{tok} ({k}/{n_pairs})" if k < n_pairs else tok
        for tok, k in zip(result.tokens, result.counts or [n_pairs] * n_pos, strict=True)
    ]
    ax.set_xticks(range(n_pos), labels=labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(layers)), labels=[str(x) for x in layers])
    align = result.align
    xlabel = {"start": "position", "end": "position from the end"}.get(
        align, f"position relative to tag {align!r}"
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="recovered (normalized)" if normalized else "metric")
    ax.set_title(title or f"{result.mode} patching, {kind}")
    return fig


def plot_dose_response(
    result,
    *,
    coherence: bool = True,
    metric_label: str = "metric",
    title: str | None = None,
    ax=None,
) -> Figure:
    """The metric against alpha for the direction (with its intervals) over the band of
    random directions (min..max), and the coherence guard on a twin axis when present."""
    curve = sorted(result.curve(), key=lambda p: p.alpha)
    if not curve:
        raise InterpError("the dose-response result has no points for the direction")
    fig, ax = _axes(ax, (6.4, 3.8))
    band = result.band()
    if band:
        a = list(band)
        ax.fill_between(
            a,
            [band[x][0] for x in a],
            [band[x][2] for x in a],
            color="grey",
            alpha=0.3,
            label=f"random directions (n={_n_random(result)})",
        )
        ax.plot(a, [band[x][1] for x in a], color="grey", lw=1, ls="--")
    x = [p.alpha for p in curve]
    y = np.array([p.value for p in curve])
    err = np.array([[p.value - p.lo for p in curve], [p.hi - p.value for p in curve]])
    ax.errorbar(
        x,
        y,
        yerr=err,
        marker="o",
        capsize=3,
        label=result.config.get("direction", "direction"),
    )
    ax.set_xlabel("alpha")
    ax.set_ylabel(metric_label)
    if coherence and any(p.coherence is not None for p in curve):
        ax2 = ax.twinx()
        ax2.plot(
            x, [p.coherence for p in curve], color="tab:red", ls=":", marker="x", label="coherence"
        )
        ax2.set_ylabel("coherence guard", color="tab:red")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        # below the axes, so it never hides either curve
        ax.legend(
            lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, ncol=3,
            loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False,
        )  # fmt: skip
    else:
        ax.legend(fontsize=8)
    ax.set_title(title or "dose-response")
    return fig


def _n_random(result) -> int:
    return len({p.seed for p in result.points if p.kind == "random"})


def plot_ablation_bars(
    rows: Sequence,
    *,
    metric_label: str = "metric",
    title: str | None = None,
    ax=None,
) -> Figure:
    """Bars with 95% intervals for each condition of :func:`~interp.causal.dose.ablation_effect`
    (``none``, ``ablated``, then the random controls pooled as one bar of their mean with
    their min..max as the whisker). ``rows``: EffectRows or dicts with the same fields."""
    items = [r if isinstance(r, dict) else r.__dict__ for r in rows]
    if not items:
        raise InterpError("no rows to plot")
    names, vals, lo, hi = [], [], [], []
    for r in items:
        if r["condition"] == "random":
            continue
        names.append("before" if r["condition"] == "none" else r["condition"])
        vals.append(r["value"])
        lo.append(r["value"] - r["lo"])
        hi.append(r["hi"] - r["value"])
    rand = [r["value"] for r in items if r["condition"] == "random"]
    if rand:
        m = float(np.mean(rand))
        names.append(f"random (n={len(rand)})")
        vals.append(m)
        lo.append(m - min(rand))
        hi.append(max(rand) - m)
    fig, ax = _axes(ax, (1.2 * len(names) + 2.0, 3.6))
    colors = [{"before": "tab:blue", "ablated": "tab:orange"}.get(n, "grey") for n in names]
    ax.bar(range(len(names)), vals, yerr=[lo, hi], capsize=4, color=colors)
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_ylabel(metric_label)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(title or "ablation")
    return fig


def plot_shift_places(places, localization: dict, *, title: str | None = None) -> Figure:
    """Where a finetune's shift lives: left, the removed share of the excess on the select
    half for every layer (one line) and rank, pooled over the seeds, the chosen place
    ringed; right, on the held-out half, each seed's removal at that place against its
    random subspaces. ``places``: the ``localization_places`` table; ``localization``: the
    ``localization`` entry of results.json."""
    import pandas as pd

    place = localization.get("place")
    if not place:
        raise InterpError("no place was chosen: nothing to plot")
    mean = pd.DataFrame(
        [
            dict(layer=layer, k=k, removal=pooled_removal(g.before, g.after, g.base))
            for (layer, k), g in pd.DataFrame(places).groupby(["layer", "k"])
        ]
    )
    fig, (left, right) = _subplots(2, (9.0, 3.6), widths=(2, 1))
    for layer, sub in mean.groupby("layer"):
        left.plot(sub.k, sub.removal, marker="o", label=f"layer {layer}")
    chosen = mean[(mean.layer == place["layer"]) & (mean.k == place["k"])]
    left.scatter(chosen.k, chosen.removal, s=160, facecolors="none", edgecolors="black", zorder=3)
    left.set_xscale("log", base=2)
    ranks = sorted(int(k) for k in mean.k.unique())
    left.set_xticks(ranks, labels=[str(k) for k in ranks])
    left.set_xlabel("rank of the shift subspace")
    left.set_ylabel("removed share of the excess")
    left.set_title(f"select half ({place['select_items']} questions), pooled over seeds")
    left.axhline(0, color="black", lw=0.5)
    left.axhline(1, color="grey", lw=0.5, ls="--")
    left.legend(fontsize=8)
    per_seed = localization["removal"]["per_seed"]
    right.scatter(range(len(per_seed)), per_seed, color="tab:orange", zorder=3, label="shift")
    rand = localization["random"]
    right.hlines([rand["mean"], rand["max"]], -0.5, len(per_seed) - 0.5, colors="grey",
                 linestyles=["-", ":"], label="random mean / max")  # fmt: skip
    seeds = localization.get("seeds") or list(range(len(per_seed)))
    right.set_xticks(range(len(per_seed)), labels=[f"seed {i}" for i in seeds])
    right.set_ylim(min(-0.1, rand["mean"] - 0.1), 1.15)
    right.axhline(0, color="black", lw=0.5)
    right.set_title(f"held out ({place['report_items']} questions)")
    right.legend(fontsize=8)
    fig.suptitle(title or f"the finetune's shift at layer {place['layer']}, rank {place['k']}")
    return fig


def _subplots(n: int, figsize, widths):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=figsize, layout="constrained",
                             gridspec_kw={"width_ratios": list(widths)})  # fmt: skip
    return fig, axes
