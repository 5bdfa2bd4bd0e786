"""Shared helpers for the benchmark scripts: timing and a markdown table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["timeit", "markdown_table"]


def timeit(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def setup_threads() -> None:
    torch.set_num_threads(2)
