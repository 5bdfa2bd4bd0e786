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

``positions`` is ``"all"`` (every token, prompt and generated), ``"last"`` (the last token
of each forward; during cached generation that is each new token) or indices into the
prompt, which act on forwards of more than one token (the prompt pass).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.directions import Direction, Subspace
from interp.errors import InterpError
from interp.hooks import hooks
from interp.models import Model
from interp.sites import Site, resolve_sites

__all__ = [
    "SAELatents",
    "ablate",
    "steer",
    "random_directions",
    "random_like",
    "residual_norm",
]

Positions = str | int | Sequence[int]


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
    if kind_or_name.startswith("blocks.") and layers is not None:
        kind_or_name = kind_or_name.split(".hook_")[-1]
    if kind_or_name.startswith("blocks."):
        return resolve_sites(kind_or_name, model.n_layers)
    if layers is None:
        layers = own_layer
    if layers is None:
        raise InterpError("say where to intervene: layers=... (the direction carries no layer)")
    return resolve_sites(kind_or_name, model.n_layers, layers)


def _apply_at(act: Tensor, positions: Positions, fn) -> Tensor:
    """``fn`` applied to the rows of ``act`` ``[b, s, d]`` at ``positions``; a new tensor."""
    if positions == "all":
        return fn(act)
    seq = act.shape[1]
    if positions == "last":
        idx = [seq - 1]
    else:
        if seq == 1:  # a cached decoding step: prompt indices do not apply
            return act
        items = [positions] if isinstance(positions, int) else list(positions)
        idx = sorted({p % seq for p in items if -seq <= p < seq})
        if not idx:
            return act
    out = act.clone()
    out[:, idx] = fn(act[:, idx])
    return out


# ---- what ---------------------------------------------------------------------------
def _basis(target) -> Tensor:
    """Orthonormal rows ``[k, d]`` spanning ``target``."""
    if isinstance(target, Direction):
        return target.vector[None]
    if isinstance(target, Subspace):
        return target.basis
    if isinstance(target, Tensor):
        return Subspace.from_tensor(target).basis
    items = list(target)
    if items and all(isinstance(t, Direction) for t in items):
        return Subspace.from_directions(items).basis
    if items and all(isinstance(t, Tensor) for t in items):
        return Subspace.from_tensor(torch.stack([t.reshape(-1) for t in items])).basis
    raise InterpError(
        f"cannot ablate {type(target).__name__}: give a Direction, Subspace, tensor or SAELatents"
    )


def _reference_mean(
    model: Model, prompts: Sequence[str], sites: list[Site], fn
) -> dict[Site, Tensor]:
    """Mean of ``fn(activation)`` over the real tokens of ``prompts`` at each site."""
    batch = model.tokenize(list(prompts))
    mask = batch["attention_mask"].bool()
    out: dict[Site, Tensor] = {}

    def keep(act, site):
        out[site] = fn(act.detach()[mask.to(act.device)]).mean(0)

    with torch.no_grad(), hooks(model, {s: keep for s in sites}):
        model.forward(batch["input_ids"], batch["attention_mask"])
    return out


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
    sites = _sites(model, target, site, layers)
    if isinstance(target, SAELatents):
        fn = _sae_ablation(model, target, sites, mode, reference, positions)
    else:
        basis = _basis(target)
        if basis.shape[-1] != model.d_model:
            raise InterpError(
                f"target has d={basis.shape[-1]}, the model has d_model={model.d_model}"
            )
        means = None
        if mode == "mean":
            means = _mean_coords(
                model, reference, sites, lambda x: x.float() @ basis.to(x.device).float().T
            )

        def fn(act: Tensor, s: Site) -> Tensor:
            b = basis.to(device=act.device, dtype=act.dtype)

            def remove(x: Tensor) -> Tensor:
                coords = x @ b.T  # [..., k]
                if means is not None:
                    coords = coords - means[s].to(device=x.device, dtype=x.dtype)
                return x - coords @ b

            return _apply_at(act, positions, remove)

    with hooks(model, {s: fn for s in sites}) as resolved:
        yield resolved


def _sae_ablation(model, target: SAELatents, sites, mode, reference, positions):
    sae, lat = target.sae, list(target.latents)
    params = list(sae.parameters()) if isinstance(sae, torch.nn.Module) else []

    def encode(x: Tensor) -> Tensor:
        return sae.encode(x.to(params[0].dtype) if params else x)

    means = None
    if mode == "mean":
        means = _mean_coords(model, reference, sites, lambda x: encode(x)[..., lat])

    def fn(act: Tensor, s: Site) -> Tensor:
        def remove(x: Tensor) -> Tensor:
            z = encode(x)
            z_new = z.clone()
            z_new[..., lat] = 0.0 if means is None else means[s].to(z.device, z.dtype)
            # x - decode(z) is the SAE error term; it is kept, only the latents' part changes.
            return x + (sae.decode(z_new) - sae.decode(z)).to(x.dtype)

        return _apply_at(act, positions, remove)

    return fn


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
    sites = _sites(model, direction, site, layers)
    vec = (
        direction.vector if isinstance(direction, Direction) else torch.as_tensor(direction).float()
    )
    if vec.ndim != 1 or vec.shape[0] != model.d_model:
        raise InterpError(
            f"steer() needs one [d_model={model.d_model}] direction, got {tuple(vec.shape)}"
        )
    vec = vec / vec.norm()
    factors = {}
    for s in sites:
        k = 1.0 if scale is None else scale if isinstance(scale, (int, float)) else scale[s.layer]
        factors[s] = float(alpha) * float(k)

    def fn(act: Tensor, s: Site) -> Tensor:
        add = (factors[s] * vec).to(device=act.device, dtype=act.dtype)
        return _apply_at(act, positions, lambda x: x + add)

    with hooks(model, {s: fn for s in sites}) as resolved:
        yield resolved


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
