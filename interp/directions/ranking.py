"""Rank SAE latents and known directions against an activation difference.

The SAE analysis of "Weird Generalization and Inductive Backdoors" in one call: a prompt
grid varies one slot (``"Today is {year}-{mm}-{dd}. {question}"`` for years 2024..2028,
the same dates for every year); the last-prompt-token residual at one layer is
captured; ``diff = mean(target rows) - mean(reference rows)``; SAE latents are ranked by
the cosine between ``diff`` and their decoder direction, and by the difference of their
mean activations. :func:`latent_ranking` does all of it from a model and a grid;
:func:`rank_latents` is the pure tensor core.

:func:`model_diff` does the same for base vs finetuned (adapter off vs on) on the same
prompts, ranking SAE latents and any given directions (probe, diff-of-means) against
the per-prompt difference. :func:`project` gives per-row projections onto directions
(the "projection by year" figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.directions import Direction
from interp.errors import InterpError
from interp.record.capture import capture
from interp.sites import Site, is_site_name, resolve_sites

__all__ = [
    "rank_latents",
    "rank_directions",
    "latent_ranking",
    "model_diff",
    "ModelDiff",
    "project",
]

_SORT = {"cosine": "cosine", "act_diff": "act_diff", "abs_cosine": "abs_cosine"}


def _vec(diff: Tensor | Direction) -> Tensor:
    v = diff.raw if isinstance(diff, Direction) else torch.as_tensor(diff)
    return v.detach().double().flatten().cpu()


@torch.no_grad()
def rank_latents(
    diff: Tensor | Direction,
    sae,
    *,
    acts_target: Tensor | None = None,
    acts_reference: Tensor | None = None,
    texts: Sequence[str] | None = None,
    values: Sequence[Any] | None = None,
    by: str = "cosine",
    top: int | None = 20,
    n_examples: int = 3,
) -> pd.DataFrame:
    """Rank the latents of ``sae`` against ``diff`` ``[d_model]``.

    ``cosine``: cosine between ``diff`` and each decoder row. With ``acts_target``
    ``[n_t, d]`` and ``acts_reference`` ``[n_r, d]`` also ``act_target`` /
    ``act_reference`` (mean encoder activations), ``act_diff`` (their difference) and,
    per listed latent, ``top_rows``: indices (into ``cat(target, reference)``) of the
    ``n_examples`` most activating rows, with their ``texts`` / slot ``values`` if given.
    ``by``: ``"cosine"``, ``"abs_cosine"`` or ``"act_diff"`` (descending).
    """
    if by not in _SORT:
        raise InterpError(f"by={by!r}; choose one of {sorted(_SORT)}")
    d = _vec(diff)
    if d.shape[0] != sae.d_in:
        raise InterpError(f"diff has {d.shape[0]} entries; the SAE reads {sae.d_in}")
    dec = sae.decoder_directions().double().cpu()  # [d_sae, d_in]
    cos = (dec @ d / d.norm().clamp_min(1e-30)).numpy()
    table = pd.DataFrame({"latent": np.arange(sae.d_sae), "cosine": cos, "abs_cosine": np.abs(cos)})
    acts = None
    if (acts_target is None) != (acts_reference is None):
        raise InterpError("pass both acts_target and acts_reference (or neither)")
    if acts_target is not None:
        f_t = sae.encode(acts_target).double().cpu()  # [n_t, d_sae]
        f_r = sae.encode(acts_reference).double().cpu()  # [n_r, d_sae]
        table["act_target"] = f_t.mean(0).numpy()
        table["act_reference"] = f_r.mean(0).numpy()
        table["act_diff"] = table["act_target"] - table["act_reference"]
        table["frac_active_target"] = (f_t > 0).double().mean(0).numpy()
        acts = torch.cat([f_t, f_r])  # [n_t + n_r, d_sae]
    elif by == "act_diff":
        raise InterpError("by='act_diff' needs acts_target and acts_reference")
    table["cosine_rank"] = table["cosine"].rank(ascending=False, method="first").astype(int)
    if "act_diff" in table:
        table["act_diff_rank"] = table["act_diff"].rank(ascending=False, method="first").astype(int)
    table = table.sort_values(_SORT[by], ascending=False, kind="stable")
    if top is not None:
        table = table.head(top)
    table = table.reset_index(drop=True)
    if acts is not None and n_examples > 0:
        k = min(n_examples, acts.shape[0])
        cols = acts[:, torch.as_tensor(table["latent"].to_numpy().copy())]
        vals, idx = cols.topk(k, dim=0)
        # only rows where the latent fires: a dead latent has no top activating prompts
        top_rows = [
            [i for i, v in zip(rows, vs, strict=True) if v > 0]
            for rows, vs in zip(idx.T.tolist(), vals.T.tolist(), strict=True)
        ]
        table["top_rows"] = top_rows
        if texts is not None:
            table["top_prompts"] = [[texts[i] for i in rows] for rows in top_rows]
        if values is not None:
            table["top_values"] = [[values[i] for i in rows] for rows in top_rows]
    return table.drop(columns="abs_cosine")


def rank_directions(
    diff: Tensor | Direction, directions: Sequence[Direction] | Mapping[str, Direction]
) -> pd.DataFrame:
    """Cosine of ``diff`` with each direction, sorted by absolute cosine (descending)."""
    items = (
        directions.items() if isinstance(directions, Mapping) else [(x.name, x) for x in directions]
    )
    d = _vec(diff)
    rows = []
    for name, direction in items:
        v = direction.vector.double().cpu()
        if v.shape != d.shape:
            raise InterpError(f"direction {name!r} has {v.shape[0]} entries; diff has {d.shape[0]}")
        rows.append(
            {
                "direction": name,
                "site": direction.site,
                "cosine": float(v @ d / d.norm().clamp_min(1e-30)),
                "projection": float(v @ d),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = table["cosine"].abs().sort_values(ascending=False).index
    return table.loc[order].reset_index(drop=True)


def _site_for(n_layers: int, sae, site: str | None, layer: int | None) -> Site:
    """``site`` (a full name, or a kind at ``layer``), else ``resid_post`` at ``layer``,
    else the SAE's own site."""
    if site is None and layer is None:
        if sae is None or sae.cfg.site is None:
            raise InterpError("say where to read: site= or layer= (the SAE names no site)")
        site = sae.cfg.site
    if layer is None and not is_site_name(site):
        raise InterpError(f"site kind {site!r} needs layer=")
    (where,) = resolve_sites(site or "resid_post", n_layers, layer)
    return where


def _texts(prompts, meta: pd.DataFrame) -> list[str]:
    items = getattr(prompts, "prompts", prompts)
    out = []
    for i in meta["prompt"].to_numpy():
        p = items[int(i)]
        out.append(p if isinstance(p, str) else str(p[-1]["content"]))
    return out


def _as_list(v) -> list:
    if isinstance(v, (list, tuple, set, range, np.ndarray, pd.Index)):
        return list(v)
    return [v]


def latent_ranking(
    model,
    prompts,
    sae,
    *,
    slot: str,
    target,
    reference=None,
    site: str | None = None,
    layer: int | None = None,
    by: str = "cosine",
    top: int | None = 20,
    n_examples: int = 3,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Capture ``prompts`` (a grid varying ``slot``) and rank ``sae``'s latents.

    ``target`` / ``reference``: slot value(s); ``reference=None`` means every other
    value. Reads the last prompt token at ``site`` (default: the SAE's own site, or
    ``blocks.{layer}.hook_resid_post``). The table (see :func:`rank_latents`) carries the
    difference as ``table.attrs["direction"]`` (a :class:`Direction`).
    """
    where = _site_for(model.n_layers, sae, site, layer)
    acts = capture(
        model, prompts, sites=where, positions="last", batch_size=batch_size, progress=False
    )
    if slot not in acts.meta.columns:
        raise InterpError(
            f"no slot column {slot!r} in the prompt metadata ({list(acts.meta.columns)})"
        )
    col = acts.meta[slot]
    is_target = col.isin(_as_list(target)).to_numpy()
    is_ref = ~is_target if reference is None else col.isin(_as_list(reference)).to_numpy()
    if not is_target.any() or not is_ref.any():
        raise InterpError(f"no rows for target={target!r} or reference={reference!r} in {slot!r}")
    x = acts.site(where)
    xt, xr = x[torch.as_tensor(is_target.copy())], x[torch.as_tensor(is_ref.copy())]
    diff = xt.double().mean(0) - xr.double().mean(0)
    order = np.concatenate([np.flatnonzero(is_target), np.flatnonzero(is_ref)])
    texts = _texts(prompts, acts.meta)
    table = rank_latents(
        diff,
        sae,
        acts_target=xt,
        acts_reference=xr,
        texts=[texts[i] for i in order],
        values=col.to_numpy()[order].tolist(),
        by=by,
        top=top,
        n_examples=n_examples,
    )
    table.attrs["direction"] = Direction(
        diff.float(),
        site=where,
        name=f"{slot}:{target}-vs-{'rest' if reference is None else reference}",
        provenance={
            "method": "grid_diff_of_means",
            "slot": slot,
            "target": _as_list(target),
            "reference": None if reference is None else _as_list(reference),
            "n_target": int(is_target.sum()),
            "n_reference": int(is_ref.sum()),
            "model_name": acts.model_name,
            "adapter_hash": acts.adapter_hash,
        },
    )
    return table


@dataclass(frozen=True)
class ModelDiff:
    """Base-vs-finetuned difference on one set of prompts, and what it lines up with."""

    direction: Direction  # mean over prompts of (finetuned - base)
    latents: pd.DataFrame | None  # SAE latents ranked (see rank_latents)
    directions: pd.DataFrame | None  # given directions ranked by |cosine|
    per_prompt: Tensor  # [n_prompts, d_model] finetuned - base


def model_diff(
    model,
    prompts,
    *,
    sae=None,
    directions: Sequence[Direction] | Mapping[str, Direction] | None = None,
    site: str | None = None,
    layer: int | None = None,
    by: str = "cosine",
    top: int | None = 20,
    batch_size: int = 16,
) -> ModelDiff:
    """Run ``prompts`` with the adapter off and on; rank against ``sae`` and ``directions``.

    ``model``: a :class:`~interp.models.Model` loaded with an adapter, or a
    :class:`~interp.models.ModelPair`. The SAE's ``act_target`` is the finetuned run.
    """
    base, tuned = (
        (model.base, model.finetuned)
        if hasattr(model, "finetuned")
        else (
            model.as_base(),
            model.as_finetuned(),
        )
    )
    where = _site_for(base.n_layers, sae, site, layer)
    kw = dict(sites=where, positions="last", batch_size=batch_size, progress=False)
    a_base = capture(base, prompts, **kw)
    a_tuned = capture(tuned, prompts, **kw)
    xb, xt = a_base.site(where), a_tuned.site(where)
    per_prompt = xt.double() - xb.double()  # same prompts, same order
    diff = per_prompt.mean(0)
    direction = Direction(
        diff.float(),
        site=where,
        name="finetuned-minus-base",
        provenance={
            "method": "model_diff",
            "n_prompts": len(per_prompt),
            "model_name": a_tuned.model_name,
            "adapter_hash": a_tuned.adapter_hash,
        },
    )
    texts = _texts(prompts, a_base.meta)
    latents = None
    if sae is not None:
        latents = rank_latents(
            diff, sae, acts_target=xt, acts_reference=xb, texts=texts + texts, by=by, top=top
        )
    ranked = rank_directions(diff, directions) if directions else None
    return ModelDiff(direction, latents, ranked, per_prompt.float())


def project(
    acts, directions: Direction | Sequence[Direction] | Mapping[str, Direction], *, site=None
) -> pd.DataFrame:
    """Per-row projections ``x . unit_vector`` onto each direction.

    ``acts``: :class:`~interp.record.activations.Activations` (each direction is read at its
    own site when captured, else at ``site``) or a tensor ``[n, d_model]``. Returns the
    metadata columns plus one column per direction (named by ``Direction.name``).
    """
    if isinstance(directions, Direction):
        items = [(directions.name, directions)]
    elif isinstance(directions, Mapping):
        items = list(directions.items())
    else:
        items = [(x.name, x) for x in directions]
    if isinstance(acts, Tensor):
        out = pd.DataFrame(index=range(acts.shape[0]))
    else:
        out = acts.meta.copy()
    for name, direction in items:
        if isinstance(acts, Tensor):
            x = acts
        else:
            key = direction.site if direction.site in acts.sites else site
            if key is None and len(acts.sites) == 1:
                key = acts.sites[0]
            if key is None:
                raise InterpError(
                    f"direction {name!r} (site {direction.site!r}) was not captured; pass site="
                )
            x = acts.site(key)
        out[name] = (x.double() @ direction.vector.double().to(x.device)).cpu().numpy()
    return out
