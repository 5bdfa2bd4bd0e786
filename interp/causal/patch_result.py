"""The result of activation patching: one true map per prompt pair, and an aligned aggregate.

:class:`PatchResult` keeps, for every pair ``i``, the ``[n_sites, n_tokens_i]`` map of the
metric after patching each (site, own token position) (``per_prompt[i]``; NaN where a
position was not patched) and the pair's tokens (``prompt_tokens[i]``). The aggregate map
(``values``, columns labelled by ``tokens``) averages pairs only over columns that mean the
same thing in each of them, as :func:`align_columns` decides:

- ``"start"``: own position ``p`` (pairs of equal length);
- ``"end"``: position from the end (``-1`` is each prompt's last token);
- a tag name: offsets from the tagged span (``year-2``, ``year[0]``, ``year+1``).

A column label names the token only where every contributing pair has that token there,
else ``*``; ``counts`` says how many pairs contributed to each column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.sites import Site, of_kind

__all__ = ["PatchResult", "align_columns", "cells_to_result"]


def _key(p: int, n: int, align: str, span: tuple[int, int] | None) -> tuple:
    """Sortable column key of own position ``p`` in a prompt of ``n`` tokens."""
    if align == "start":
        return (0, p)
    if align == "end":
        return (0, p - n)
    assert span is not None
    lo, hi = span
    if p < lo:
        return (0, p - lo)
    if p <= hi:
        return (1, p - lo)
    return (2, p - hi)


def _label(key: tuple, align: str, tag: str | None) -> str:
    if align in ("start", "end"):
        return str(key[1])
    part, k = key
    return f"{tag}{k}" if part == 0 else f"{tag}[{k}]" if part == 1 else f"{tag}+{k}"


def align_columns(
    per_prompt: list[Tensor],
    prompt_tokens: list[list[str]],
    align: str,
    tag_spans: list[tuple[int, int]] | None = None,
    tag: str | None = None,
) -> tuple[Tensor, list[str], list[int], list[tuple]]:
    """Aggregate per-pair maps ``[n_sites, n_i]`` into aligned columns.

    Returns ``values [n_sites, n_columns]`` (mean over the pairs that have the column and
    patched it), labels, counts per column, and the column keys.
    """
    cells: dict[tuple, list[tuple[int, int]]] = {}
    for i, m in enumerate(per_prompt):
        n = m.shape[1]
        span = tag_spans[i] if tag_spans is not None else None
        for p in range(n):
            if not torch.isnan(m[:, p]).all():
                cells.setdefault(_key(p, n, align, span), []).append((i, p))
    keys = sorted(cells)
    n_sites = per_prompt[0].shape[0]
    values = torch.zeros(n_sites, len(keys))
    labels, counts = [], []
    for j, key in enumerate(keys):
        members = cells[key]
        values[:, j] = torch.stack([per_prompt[i][:, p] for i, p in members]).mean(0)
        toks = {prompt_tokens[i][p] for i, p in members}
        tok = toks.pop() if len(toks) == 1 else "*"
        labels.append(f"{_label(key, align, tag)}:{tok}")
        counts.append(len(members))
    return values, labels, counts, keys


@dataclass
class PatchResult:
    """Metric after patching each (site, position); see the module docstring.

    ``values`` ``[n_sites, n_columns]`` is the aligned aggregate, ``tokens`` its column
    labels, ``positions`` its column offsets (own position for ``"start"``, from the end
    for ``"end"``, from the tag for a tag), ``counts`` the pairs in each column.
    """

    values: Tensor  # [n_sites, n_columns]
    sites: list[Site]  # names are parsed on construction
    positions: list[int]
    tokens: list[str]
    clean_value: float
    corrupt_value: float
    mode: str
    per_prompt: list[Tensor] | None = None  # pair i: [n_sites, n_tokens_i]
    prompt_tokens: list[list[str]] = field(default_factory=list)
    clean_values: Tensor | None = None  # [n_pairs]
    corrupt_values: Tensor | None = None  # [n_pairs]
    align: str = "start"
    counts: list[int] = field(default_factory=list)
    tags: dict[str, list[list[int]]] = field(default_factory=dict)  # tag -> own token indices
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sites = [Site.parse(s) for s in self.sites]

    def normalized(self) -> Tensor:
        """``(value - corrupt) / (clean - corrupt)``: 0 = no effect, 1 = full recovery."""
        return (self.values - self.corrupt_value) / (self.clean_value - self.corrupt_value)

    def normalized_per_prompt(self) -> list[Tensor]:
        """Each pair's map normalized by that pair's own clean and corrupt values."""
        if self.per_prompt is None or self.clean_values is None or self.corrupt_values is None:
            raise InterpError("this result has no per-prompt values (the metric was a scalar)")
        return [
            (m - x) / (c - x)
            for m, c, x in zip(self.per_prompt, self.clean_values, self.corrupt_values, strict=True)
        ]

    def at(self, site: str, which: str | int) -> Tensor:
        """Each pair's value at ``site`` at one own position per pair: ``"last"``, a tag
        name (the tag's last token) or an index. ``[n_pairs]`` (NaN where not patched)."""
        if self.per_prompt is None:
            raise InterpError("this result has no per-prompt values (the metric was a scalar)")
        k = self.sites.index(site)
        out = []
        for i, m in enumerate(self.per_prompt):
            if which == "last":
                p = m.shape[1] - 1
            elif isinstance(which, str):
                if which not in self.tags:
                    raise InterpError(
                        f"no tag {which!r} in this result (tags: {sorted(self.tags)})"
                    )
                p = self.tags[which][i][-1]
            else:
                p = int(which) % m.shape[1]
            out.append(m[k, p])
        return torch.stack(out)

    def grid(self, kind: str) -> tuple[list[int], Tensor]:
        """Layers and the ``[n_layers, n_columns]`` block of one site kind."""
        rows, layers = of_kind(self.sites, kind)
        return layers, self.values[rows]

    def to_frame(self):
        """Long table of the aggregate: one row per (site, column)."""
        import pandas as pd

        norm = self.normalized()
        rows = []
        for i, site in enumerate(self.sites):
            for j, pos in enumerate(self.positions):
                rows.append(
                    dict(
                        site=site.name,
                        layer=site.layer,
                        kind=site.kind,
                        position=pos,
                        token=self.tokens[j],
                        n=self.counts[j] if self.counts else None,
                        value=float(self.values[i, j]),
                        normalized=float(norm[i, j]),
                    )
                )
        return pd.DataFrame(rows)

    def per_prompt_frame(self):
        """Long table of every pair's own map: pair, site, own position, token, value."""
        import pandas as pd

        if self.per_prompt is None:
            raise InterpError("this result has no per-prompt values (the metric was a scalar)")
        rows = []
        for k, m in enumerate(self.per_prompt):
            for i, site in enumerate(self.sites):
                for p in range(m.shape[1]):
                    if not torch.isnan(m[i, p]):
                        tok = self.prompt_tokens[k][p]
                        rows.append(
                            dict(
                                pair=k, site=site.name, position=p, token=tok, value=float(m[i, p])
                            )
                        )
        return pd.DataFrame(rows)

    def save(self, directory: str | Path, config: dict | None = None) -> Path:
        """Write ``patching.csv`` (aggregate), ``patching_per_prompt.csv`` and ``patching.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(directory / "patching.csv", index=False)
        if self.per_prompt is not None:
            self.per_prompt_frame().to_csv(directory / "patching_per_prompt.csv", index=False)
        meta = dict(
            mode=self.mode,
            align=self.align,
            clean_value=self.clean_value,
            corrupt_value=self.corrupt_value,
            sites=[s.name for s in self.sites],
            positions=self.positions,
            tokens=self.tokens,
            counts=self.counts,
            prompt_tokens=self.prompt_tokens,
            config={**self.config, **(config or {})},
        )
        (directory / "patching.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory


def cells_to_result(
    *,
    sites: list[Site],
    prompt_tokens: list[list[str]],
    tags: dict[str, list[list[int]]],
    per_positions: list[list[int]],
    groups: dict[int, list[int]],
    cells: dict[tuple[int, int, int], Tensor],
    clean_values: Tensor,
    corrupt_values: Tensor,
    align: str,
    mode: str,
    config: dict,
) -> PatchResult:
    """A :class:`PatchResult` from the patching engine's cells: ``cells[site index,
    position, length]`` holds the values of the pairs of that length (``groups[length]``,
    in order), ``[n_group]`` each, or a scalar when the metric returned one."""
    if any(v.ndim == 0 for v in cells.values()):
        return _scalar_result(sites, prompt_tokens, per_positions, groups, cells,
                              clean_values, corrupt_values, mode, config)  # fmt: skip
    per = [torch.full((len(sites), len(toks)), float("nan")) for toks in prompt_tokens]
    for length, index in groups.items():
        for r, i in enumerate(index):
            for p in per_positions[i]:
                for k in range(len(sites)):
                    per[i][k, p] = cells[k, p, length][r]
    spans = None
    if align not in ("start", "end"):
        if align not in tags:
            raise InterpError(f"align={align!r}: give clean prompts as a PromptSet with that tag")
        spans = [(t[0], t[-1]) for t in tags[align]]
    values, labels, counts, keys = align_columns(per, prompt_tokens, align, spans, align)
    return PatchResult(
        values=values,
        sites=sites,
        positions=[k[1] for k in keys],
        tokens=labels,
        clean_value=float(clean_values.mean()),
        corrupt_value=float(corrupt_values.mean()),
        mode=mode,
        per_prompt=per,
        prompt_tokens=prompt_tokens,
        clean_values=clean_values,
        corrupt_values=corrupt_values,
        align=align,
        counts=counts,
        tags=tags,
        config=config,
    )


def _scalar_result(
    sites, prompt_tokens, per_positions, groups, cells, clean_values, corrupt_values, mode, config
) -> PatchResult:
    """The aggregate alone, for a metric that returned one scalar for the whole batch."""
    n = len(prompt_tokens)
    uniform = len(groups) == 1 and all(p == per_positions[0] for p in per_positions)
    if not uniform:
        raise InterpError(
            "the metric returned a scalar; with pairs of different lengths or positions it "
            f"must return one value per prompt ([{n}])"
        )
    (length,) = groups
    pos = per_positions[0]
    values = torch.tensor([[float(cells[i, p, length]) for p in pos] for i in range(len(sites))])
    labels = [f"{p}:{prompt_tokens[0][p] if n == 1 else '*'}" for p in pos]
    return PatchResult(
        values, sites, pos, labels, float(clean_values), float(corrupt_values), mode,
        align="start", counts=[n] * len(pos), prompt_tokens=prompt_tokens, config=config,
    )  # fmt: skip
