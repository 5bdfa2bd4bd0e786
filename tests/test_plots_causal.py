"""Causal figures are drawn from results alone (built here by hand, no model runs)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from interp.causal.dose import DosePoint, DoseResult, EffectRow
from interp.causal.patching import PatchResult
from interp.errors import InterpError
from interp.plots.causal import plot_ablation_bars, plot_dose_response, plot_patching


def _patch_result():
    values = torch.arange(12.0).reshape(4, 3)  # 2 kinds x 2 layers, 3 positions
    return PatchResult(
        values=values,
        sites=[
            "blocks.0.hook_resid_pre",
            "blocks.0.hook_mlp_out",
            "blocks.1.hook_resid_pre",
            "blocks.1.hook_mlp_out",
        ],
        positions=[0, 1, 2],
        tokens=["0:The", "1:Ġyear", "2:Ġis"],
        clean_value=11.0,
        corrupt_value=0.0,
        mode="exact",
    )


def test_patching_heatmap_has_token_labels_and_layers(tmp_path):
    res = _patch_result()
    fig = plot_patching(res, kind="mlp_out")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == res.tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]
    image = ax.images[0].get_array()
    assert image.shape == (2, 3)
    assert float(image[1, 2]) == pytest.approx(11 / 11)  # normalized mlp_out, layer 1, last pos
    raw = plot_patching(res, kind="resid_pre", normalized=False).axes[0].images[0].get_array()
    assert float(raw[1, 0]) == 6.0
    fig.savefig(tmp_path / "patch.png")
    with pytest.raises(InterpError):
        plot_patching(res, kind="attn_out")


def _dose():
    pts = []
    for a in (-1.0, 0.0, 1.0):
        pts.append(
            DosePoint(
                a, "direction", None, 2 * a, 2 * a - 0.1, 2 * a + 0.1, 3, -5.0 - abs(a), None, None
            )
        )
        for s in (0, 1):
            pts.append(DosePoint(a, "random", s, 0.1 * a * (s + 1), 0.0, 0.0, 3))
    return DoseResult(pts, {"direction": "era"})


def test_dose_response_curve_with_random_band_and_guard(tmp_path):
    fig = plot_dose_response(_dose(), metric_label="share 1838")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # metric and the coherence guard
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "random directions (n=2)" in labels and "era" in labels and "coherence" in labels
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.2) and band[:, 1].min() == pytest.approx(-0.2)
    fig.savefig(tmp_path / "dose.png")
    no_guard = plot_dose_response(_dose(), coherence=False)
    assert len(no_guard.axes) == 1


def test_ablation_bars_with_intervals(tmp_path):
    rows = [
        EffectRow("none", None, 0.8, 0.7, 0.9, 50),
        EffectRow("ablated", None, 0.2, 0.1, 0.3, 50),
        EffectRow("random", 0, 0.75, 0.6, 0.85, 50),
        EffectRow("random", 1, 0.79, 0.7, 0.88, 50),
    ]
    fig = plot_ablation_bars(rows, metric_label="harmful rate")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.8, 0.2, 0.77])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["before", "ablated", "random (n=2)"]
    fig.savefig(tmp_path / "bars.png")
    with pytest.raises(InterpError):
        plot_ablation_bars([])
