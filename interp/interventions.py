"""Interventions: remove, replace or add a direction while the model runs.

Every intervention is a context manager over :func:`interp.hooks.hooks`: hooks are
registered on enter and removed in ``finally`` (only its own), activations are never
edited in place, and the hooks act on every forward inside the ``with`` body, so on every
token of ``model.generate`` too, and on the base or adapter view alike.

- :func:`ablate` projects out a :class:`~interp.directions.Direction`, a
  :class:`~interp.directions.Subspace` (or vectors, orthonormalized jointly, never by
  sequential projections), or sets the projection to its mean over a reference set
  (``mode="mean"``); with :class:`SAELatents` it subtracts those latents' decoder
  contribution and keeps the SAE error term.
- :func:`steer` adds ``alpha * scale * direction``; ``alpha=0`` is an exact no-op.
- :func:`random_like` / :func:`random_directions` give norm-matched random controls for
  the same intervention; :func:`residual_norm` the typical residual norm to scale by.

``positions`` follows :mod:`interp.positions`: ``"all"`` (every token, prompt and
generated), ``"last"`` (the last token of each forward; during cached generation that is
each new token) or token indices *in each prompt's own tokens* (negative from the prompt's
end), which act on the prompt pass. In a batch that mixes prompt lengths, index 0 is each
prompt's first token, never a pad column; an index a prompt does not have is an error
naming the prompt. Hooks entered on one view of a :class:`~interp.models.ModelPair` act
only on that view (:mod:`interp.hooks`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.directions import Direction, Subspace
from interp.errors import InterpError, PositionError
from interp.execution import Layout, chunks, track_layout
from interp.hooks import hooks
from interp.models import Model
from interp.positions import Span, normalize
from interp.sites import Site, resolve_sites

__all__ = [
    "SAELatents",
    "ablate",
    "steer",
    "random_directions",
    "random_like",
    "residual_norm",
]

Positions = str | int | Sequence[int]  # "all", "last", or own-token indices


@dataclass(frozen=True)
class SAELatents:
    """Latents ``latents`` of a sparse autoencoder (``encode``/``decode``) to ablate."""

    sae: object
    latents: tuple[int, ...]

    def __init__(self, sae, latents: int | Sequence[int]):
        object.__setattr__(self, "sae", sae)
        lat = (latents,) if isinstance(latents, int) else tuple(int(i) for i in latents)
        object.__setattr__(self, "latents", lat)


# ---- where -------------------------------------------------------------------------
def _sites(model: Model, target, site: str | None, layers) -> list[Site]:
    own_site = getattr(target, "site", None)
    own_layer = getattr(target, "layer", None)
    kind_or_name = site or own_site or "resid_post"
    if site is None and own_site and own_site.startswith("blocks.") and layers is not None:
        kind_or_name = own_site.split(".hook_")[-1]  # the target's kind at other layers
    if kind_or_name.startswith("blocks."):
        if layers is not None:
            raise InterpError(
                f"site {kind_or_name!r} names its layer; pass a site kind with layers=, not both"
            )
        return resolve_sites(kind_or_name, model.n_layers)
    if layers is None:
        layers = own_layer
    if layers is None:
        raise InterpError("say where to intervene: layers=... (the direction carries no layer)")
    return resolve_sites(kind_or_name, model.n_layers, layers)


def _check_positions(positions: Positions):
    spec = normalize(positions)
    if isinstance(spec, Span):
        raise PositionError(
            f"interventions take 'all', 'last' or token indices, not a tag ({spec.tag!r}); "
            "resolve the tag to indices first (interp.positions.resolve)"
        )
    return spec


def _cells(layout: Layout | None, spec, act: Tensor) -> tuple[Tensor, Tensor] | None:
    """Rows and columns of ``act`` ``[b, s, d]`` that ``spec`` names in this forward."""
    b, s = act.shape[:2]
    if layout is None or layout.own.shape != (b, s):  # no layout seen: no padding assumed
        layout = Layout(torch.arange(s).expand(b, s), torch.full((b,), s), s > 1)
    own = layout.own
    if spec == "last":
        rows = torch.arange(b)
        return rows, own.argmax(1)
    rows, cols = [], []
    for r in range(b):
        n = int(layout.lengths[r])
        if layout.prefill:
            for p in spec:
                if not -n <= p < n:
                    raise PositionError(
                        f"position {p} does not exist in prompt {r} of the batch ({n} tokens)"
                    )
            wanted = {p % n for p in spec}
        else:  # a later forward (cached generation): only non-negative prompt indices match
            wanted = {p for p in spec if p >= 0}
        for c in range(s):
            if int(own[r, c]) in wanted:
                rows.append(r)
                cols.append(c)
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)


def _layout(model: Model, spec):
    """The layout watch, only where positions need it (``"all"`` does not)."""
    return nullcontext([None]) if spec == "all" else track_layout(model)


def _apply_at(act: Tensor, layout: Layout | None, spec, fn) -> Tensor:
    """``fn`` applied to the rows ``[k, d]`` of ``act`` ``[b, s, d]`` at ``spec``; a new tensor."""
    if spec == "all":
        return fn(act)
    rows, cols = _cells(layout, spec, act)
    if rows.numel() == 0:
        return act
    rows, cols = rows.to(act.device), cols.to(act.device)
    out = act.clone()
    out[rows, cols] = fn(act[rows, cols])
    return out


# ---- what ---------------------------------------------------------------------------
def _check_finite(t: Tensor) -> None:
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise InterpError("the ablation target has non-finite entries (NaN or inf)")


def _basis(target) -> Tensor:
    """Orthonormal rows ``[k, d]`` spanning ``target``."""
    if isinstance(target, Direction):
        return target.vector[None]
    if isinstance(target, Subspace):
        return target.basis
    if isinstance(target, Tensor):
        _check_finite(target)
        return Subspace.from_tensor(target).basis
    items = list(target)
    if items and all(isinstance(t, Direction) for t in items):
        return Subspace.from_directions(items).basis
    if items and all(isinstance(t, Tensor) for t in items):
        for t in items:
            _check_finite(t)
        return Subspace.from_tensor(torch.stack([t.reshape(-1) for t in items])).basis
    raise InterpError(
        f"cannot ablate {type(target).__name__}: give a Direction, Subspace, tensor or SAELatents"
    )


def _reference_mean(
    model: Model, prompts: Sequence[str], sites: list[Site], fn, batch_size: int = 32
) -> dict[Site, Tensor]:
    """Mean of ``fn(activation)`` over the real tokens of ``prompts`` at each site, in
    batches (float64 sums, so the result does not depend on the batch size)."""
    sums: dict[Site, Tensor] = {}
    count = 0
    mask: Tensor | None = None

    def keep(act, site):
        x = fn(act.detach()[mask.to(act.device)]).double().sum(0).cpu()
        sums[site] = sums[site] + x if site in sums else x

    with torch.no_grad(), hooks(model, {s: keep for s in sites}):
        for chunk in chunks(model, list(prompts), batch_size, bucket=True):
            mask = chunk.inputs["attention_mask"].bool()
            count += int(mask.sum())
            model.forward(chunk.inputs["input_ids"], chunk.inputs["attention_mask"])
    return {s: (v / count).float() for s, v in sums.items()}


def _mean_coords(model, reference, sites, fn) -> dict[Site, Tensor]:
    if reference is None:
        raise InterpError("mode='mean' needs reference= (prompts, or activations [..., d_model])")
    if isinstance(reference, Tensor):
        mu = fn(reference.reshape(-1, reference.shape[-1])).mean(0)
        return {s: mu for s in sites}
    return _reference_mean(model, reference, sites, fn)


@contextmanager
def ablate(
    model: Model,
    target,
    *,
    layers: int | Sequence[int] | None = None,
    site: str | None = None,
    positions: Positions = "all",
    mode: str = "project",
    reference: Sequence[str] | Tensor | None = None,
) -> Iterator[list[Site]]:
    """Remove ``target`` from the activations at ``site`` (default: the target's own site,
    else ``resid_post``) of ``layers`` (default: the target's layer).

    ``mode="project"``: ``x - B^T B x`` for the orthonormal basis ``B`` of the target (zero
    ablation of SAE latents). ``mode="mean"``: the projection is set to its mean over
    ``reference`` (prompts, whose real tokens are averaged at each site, or activations).
    Yields the resolved sites.
    """
    if mode not in ("project", "mean"):
        raise InterpError(f"mode must be 'project' or 'mean', got {mode!r}")
    spec = _check_positions(positions)
    sites = _sites(model, target, site, layers)
    if isinstance(target, SAELatents):
        make = _sae_ablation(model, target, sites, mode, reference)
    else:
        make = _projection_ablation(model, _basis(target), sites, mode, reference)

    with _layout(model, spec) as layout:

        def fn(act: Tensor, s: Site) -> Tensor:
            return _apply_at(act, layout[0], spec, make(s))

        with hooks(model, {s: fn for s in sites}) as resolved:
            yield resolved


def _projection_ablation(model: Model, basis: Tensor, sites, mode, reference):
    """Per site, ``x -> x - B^T (B x - mean)`` computed in float32 (any model dtype)."""
    if basis.shape[-1] != model.d_model:
        raise InterpError(f"target has d={basis.shape[-1]}, the model has d_model={model.d_model}")
    if not torch.isfinite(basis).all():
        raise InterpError("the ablation target has non-finite entries (NaN or inf)")
    basis = basis.float()
    means = None
    if mode == "mean":
        means = _mean_coords(model, reference, sites, lambda x: x.float() @ basis.to(x.device).T)

    def make(s: Site):
        def remove(x: Tensor) -> Tensor:
            b = basis.to(x.device)
            coords = x.float() @ b.T  # [..., k]
            if means is not None:
                coords = coords - means[s].to(x.device)
            return (x.float() - coords @ b).to(x.dtype)

        return remove

    return make


def _sae_ablation(model, target: SAELatents, sites, mode, reference):
    sae, lat = target.sae, list(target.latents)
    params = list(sae.parameters()) if isinstance(sae, torch.nn.Module) else []

    def encode(x: Tensor) -> Tensor:
        return sae.encode(x.to(params[0].dtype) if params else x)

    means = None
    if mode == "mean":
        means = _mean_coords(model, reference, sites, lambda x: encode(x)[..., lat])

    def make(s: Site):
        def remove(x: Tensor) -> Tensor:
            z = encode(x)
            z_new = z.clone()
            z_new[..., lat] = 0.0 if means is None else means[s].to(z.device, z.dtype)
            # x - decode(z) is the SAE error term; it is kept, only the latents' part changes.
            return x + (sae.decode(z_new) - sae.decode(z)).to(x.dtype)

        return remove

    return make


@contextmanager
def steer(
    model: Model,
    direction: Direction | Tensor,
    *,
    alpha: float,
    layers: int | Sequence[int] | None = None,
    site: str | None = None,
    positions: Positions = "all",
    scale: float | Mapping[int, float] | None = None,
) -> Iterator[list[Site]]:
    """Add ``alpha * scale * direction`` at ``site`` of ``layers``.

    ``direction`` is used as a unit vector (a :class:`Direction` is one; a tensor is
    normalized). ``scale``: a number, or ``{layer: typical residual norm}`` from
    :func:`residual_norm` so that ``alpha`` is a fraction of the residual norm; default 1.
    ``alpha=0`` leaves every activation bitwise unchanged.
    """
    spec = _check_positions(positions)
    sites = _sites(model, direction, site, layers)
    vec = _unit(direction, model.d_model)
    factors = {s: _finite(float(alpha) * _scale_at(scale, s.layer), "alpha x scale") for s in sites}

    with _layout(model, spec) as layout:

        def fn(act: Tensor, s: Site) -> Tensor:
            add = (factors[s] * vec).to(device=act.device, dtype=act.dtype)
            return _apply_at(act, layout[0], spec, lambda x: x + add)

        with hooks(model, {s: fn for s in sites}) as resolved:
            yield resolved


def _unit(direction: Direction | Tensor, d_model: int) -> Tensor:
    vec = direction.vector if isinstance(direction, Direction) else torch.as_tensor(direction)
    vec = vec.detach().float().cpu()
    if vec.ndim != 1 or vec.shape[0] != d_model:
        raise InterpError(
            f"steer() needs one [d_model={d_model}] direction, got {tuple(vec.shape)}"
        )
    if not torch.isfinite(vec).all():
        raise InterpError("the steering direction has non-finite entries (NaN or inf)")
    norm = vec.norm()
    if norm == 0:
        raise InterpError("the steering direction is the zero vector")
    return vec / norm


def _finite(value: float, what: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise InterpError(f"{what} must be finite, got {value}")
    return value


def _scale_at(scale: float | Mapping[int, float] | None, layer: int) -> float:
    if scale is None:
        return 1.0
    if isinstance(scale, bool):
        raise InterpError(f"scale must be a number or {{layer: norm}}, got {scale!r}")
    if isinstance(scale, (int, float)):
        return float(scale)
    if layer not in scale:
        raise InterpError(f"scale has no entry for layer {layer} (has {sorted(scale)})")
    return float(scale[layer])


def residual_norm(
    model: Model,
    prompts: Sequence[str],
    *,
    layers: int | Sequence[int] | None = None,
    site: str = "resid_post",
) -> dict[int, float]:
    """Mean L2 norm of the activation at ``site`` over the real tokens of ``prompts``, per layer."""
    sites = resolve_sites(site, model.n_layers, layers)
    means = _reference_mean(model, prompts, sites, lambda x: x.float().norm(dim=-1))
    return {s.layer: float(v) for s, v in means.items()}


# ---- controls -----------------------------------------------------------------------
def random_directions(d_model: int, n: int, *, seed: int = 0) -> Tensor:
    """``n`` random unit vectors ``[n, d_model]`` (uniform on the sphere), reproducible."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d_model, generator=gen)
    return v / v.norm(dim=-1, keepdim=True)


def random_like(target, *, seed: int = 0):
    """A random control of the same kind, place and size as ``target``.

    A :class:`Direction` gives a random unit Direction at the same layer and site (same
    ``scale``); a :class:`Subspace` a random orthonormal subspace of the same rank; a tensor
    ``[d]`` a random vector of the same norm, ``[k, d]`` random rows of the same norms.
    """
    gen = torch.Generator().manual_seed(seed)
    if isinstance(target, Direction):
        v = random_directions(target.d_model, 1, seed=seed)[0].to(target.vector.dtype)
        return Direction(
            v, layer=target.layer, site=target.site, name=f"random-{seed}", scale=target.scale
        )
    if isinstance(target, Subspace):
        q, _ = torch.linalg.qr(
            torch.randn(target.d_model, target.k, generator=gen, dtype=torch.float64)
        )
        return Subspace(
            q.T.to(target.basis.dtype), layer=target.layer, site=target.site, name=f"random-{seed}"
        )
    if isinstance(target, Tensor):
        t = target.float()
        rows = t[None] if t.ndim == 1 else t
        r = random_directions(rows.shape[-1], rows.shape[0], seed=seed) * rows.norm(
            dim=-1, keepdim=True
        )
        return (r[0] if t.ndim == 1 else r).to(target.dtype)
    raise InterpError(f"no random control for {type(target).__name__}")
