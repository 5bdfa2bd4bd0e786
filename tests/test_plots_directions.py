import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from interp.directions.ranking import rank_latents  # noqa: E402
from interp.directions.sae import make_sae  # noqa: E402
from interp.errors import InterpError  # noqa: E402
from interp.plots import plot_probe_accuracy, plot_projection_by_slot, plot_ranked_latents  # noqa: E402


def _probe_table(peak: int, n_layers: int = 8) -> pd.DataFrame:
    layers = np.arange(n_layers)
    acc = 0.5 + 0.45 * np.exp(-0.5 * (layers - peak) ** 2 / 4)
    return pd.DataFrame(
        {
            "layer": layers,
            "accuracy": acc,
            "accuracy_lo": acc - 0.03,
            "accuracy_hi": np.minimum(acc + 0.03, 1.0),
            "auroc": acc + 0.02,
            "auroc_lo": acc,
            "auroc_hi": np.minimum(acc + 0.04, 1.0),
        }
    )


def test_probe_accuracy_figure(tmp_path):
    fig = plot_probe_accuracy({"base": _probe_table(5), "finetuned": _probe_table(3)})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "finetuned", "chance"]
    assert len(ax.collections) == 2  # one interval band per table
    fig.savefig(tmp_path / "probe_accuracy.png", dpi=80)
    fig2 = plot_probe_accuracy(_probe_table(4), metric="auroc")
    assert fig2.axes[0].get_ylabel() == "AUROC"
    with pytest.raises(InterpError):
        plot_probe_accuracy(_probe_table(4).drop(columns="accuracy_lo"))


def test_projection_by_slot_figure(tmp_path):
    rng = np.random.default_rng(0)
    years = np.repeat(np.arange(2020, 2032), 20)
    era = rng.normal(size=len(years)) + 3 * (years >= 2027)
    table = pd.DataFrame(
        {
            "prompt": range(len(years)),
            "position": 9,
            "year": years,
            "era probe": era,
            "diff of means": 0.5 * era + rng.normal(size=len(years)),
        }
    )
    fig = plot_projection_by_slot(table, slot="year", target=range(2027, 2032))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["target", "era probe", "diff of means"]
    assert len(ax.patches) == 1  # one contiguous shaded span for 2027..2031
    assert ax.get_xlabel() == "year"
    fig.savefig(tmp_path / "projection.png", dpi=80)
    with pytest.raises(InterpError):
        plot_projection_by_slot(table, slot="month")


def test_ranked_latents_figure(tmp_path):
    g = torch.Generator().manual_seed(0)
    sae = make_sae("standard", d_in=16, d_sae=40, seed=0)
    tgt, ref = torch.randn(30, 16, generator=g) + 1, torch.randn(30, 16, generator=g)
    values = [2028] * 30 + [2024] * 30
    table = rank_latents(
        tgt.mean(0) - ref.mean(0), sae, acts_target=tgt, acts_reference=ref, values=values, top=12
    )
    fig = plot_ranked_latents(table)
    assert len(fig.axes) == 2  # cosine and activation difference
    assert len(fig.axes[0].patches) == 12
    first = fig.axes[0].get_yticklabels()[-1].get_text()
    assert first.startswith(f"#{table.latent[0]}")
    fig.savefig(tmp_path / "ranked.png", dpi=80)
    only_cos = plot_ranked_latents(rank_latents(tgt.mean(0), sae, top=5))
    assert len(only_cos.axes) == 1
