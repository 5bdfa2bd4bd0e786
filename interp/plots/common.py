"""What every figure module shares."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["axes"]


def axes(ax, figsize) -> tuple[Figure, plt.Axes]:
    """``ax`` and its figure, or a new constrained-layout figure of ``figsize``."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax
