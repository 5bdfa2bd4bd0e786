"""Shared helpers for the benchmark scripts: timing and a markdown table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["timeit", "markdown_table"]


def timeit(
    fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2, clock: str = "wall"
) -> float:
    """Median time of ``fn()`` in seconds: wall time, or this process's CPU time
    (``clock="cpu"``: steadier on a shared machine, with one thread)."""
    now = time.perf_counter if clock == "wall" else time.process_time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = now()
        fn()
        times.append(now() - t)
    return statistics.median(times)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def setup_threads(n: int = 2) -> None:
    torch.set_num_threads(n)
