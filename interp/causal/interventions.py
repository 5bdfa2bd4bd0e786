"""Interventions: remove, replace or add a direction while the model runs.

Every intervention is a context manager over :func:`interp.hooks.hooks`: hooks are
registered on enter and removed in ``finally`` (only its own), activations are never
edited in place, and the hooks act on every forward inside the ``with`` body, so on every
token of ``model.generate`` too, and on the base or adapter view alike.

- :func:`ablate` applies an ablation operator (:mod:`interp.causal.operators`) to a
  :class:`~interp.directions.Direction`, a :class:`~interp.directions.Subspace` (or
  vectors, orthonormalized jointly, never by sequential projections) or
  :class:`~interp.causal.operators.SAELatents` (whose update keeps the SAE error term): project
  it out (the default), clamp it to its mean over a reference set, resample it from the
  reference set, or zero the whole activation.
- :func:`steer` adds ``alpha * scale * direction`` (the ``add`` operator); ``alpha=0`` is
  an exact no-op.
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

import torch
from torch import Tensor

from interp.causal.operators import (
    Basis,
    OpContext,
    Operator,
    SAELatents,
    add,
    as_target,
    operator,
    project,
)
from interp.directions import Direction, Subspace
from interp.errors import InterpError, PositionError
from interp.execution import Layout, chunks, track_layout
from interp.hooks import hooks
from interp.models import Model
from interp.positions import Span, normalize
from interp.sites import Site, is_site_name, kind_of, resolve_sites

__all__ = [
    "SAELatents",
    "ablate",
    "steer",
    "random_directions",
    "random_like",
    "residual_norm",
]

Positions = str | int | Sequence[int]  # "all", "last", or own-token indices


# ---- where -------------------------------------------------------------------------
def _sites(model: Model, target, site: str | None, layers) -> list[Site]:
    own_site = getattr(target, "site", None)
    own_layer = getattr(target, "layer", None)
    kind_or_name = site or own_site or "resid_post"
    if site is None and own_site is not None and layers is not None:
        kind_or_name = kind_of(own_site)  # the target's kind at other layers
    if is_site_name(kind_or_name):
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
def _reference_rows(
    model: Model, prompts: Sequence[str], sites: list[Site], fn, batch_size: int = 32
) -> dict[Site, Tensor]:
    """``fn(activation)`` ``[m, ...]`` at the real tokens of ``prompts`` at each site, in
    prompt order whatever the batching."""
    rows: dict[Site, list[tuple[int, Tensor]]] = {s: [] for s in sites}
    chunk = None
    seen: dict[Site, list[tuple[int, Tensor]]] = {}  # this forward's (set: a hook may rerun)

    def keep(act, site):
        mask = chunk.inputs["attention_mask"].bool().to(act.device)
        seen[site] = [(i, fn(act.detach()[r][mask[r]]).cpu()) for r, i in enumerate(chunk.index)]

    with torch.no_grad(), hooks(model, {s: keep for s in sites}):
        for chunk in chunks(model, list(prompts), batch_size, bucket=True):
            seen.clear()
            model.forward(chunk.inputs["input_ids"], chunk.inputs["attention_mask"])
            for site, got in seen.items():
                rows[site] += got
    return {s: torch.cat([t for _, t in sorted(v, key=lambda e: e[0])]) for s, v in rows.items()}


def _reference(model, reference, sites, target) -> dict[Site, Tensor]:
    """The target's coordinates ``[m, k]`` on the reference rows, per site (none without
    a reference or a target)."""
    if reference is None or target is None:
        return {}
    with torch.no_grad():
        if isinstance(reference, Tensor):
            coords = target.read(reference.reshape(-1, reference.shape[-1])).detach().cpu()
            return {s: coords for s in sites}
        return _reference_rows(model, reference, sites, target.read)


_NEEDS_REFERENCE = ("mean", "resample")


@contextmanager
def _intervene(model: Model, spec, op: Operator, contexts: dict[Site, OpContext]):
    """``op`` at every site of ``contexts``, on the positions ``spec`` names."""
    with _layout(model, spec) as layout:

        def fn(act: Tensor, s: Site) -> Tensor:
            return _apply_at(act, layout[0], spec, lambda x: op(x, contexts[s]))

        with hooks(model, {s: fn for s in contexts}) as resolved:
            yield resolved


@contextmanager
def ablate(
    model: Model,
    target=None,
    *,
    layers: int | Sequence[int] | None = None,
    site: str | None = None,
    positions: Positions = "all",
    op: Operator | str = project,
    mode: str | None = None,
    reference: Sequence[str] | Tensor | None = None,
    seed: int = 0,
) -> Iterator[list[Site]]:
    """Apply the ablation operator ``op`` to ``target`` at ``site`` (default: the target's
    own site, else ``resid_post``) of ``layers`` (default: the target's layer).

    ``op`` (:mod:`interp.causal.operators`): ``project`` (default) sets the target's coordinates
    to 0, ``x - B^T B x`` for the orthonormal basis ``B`` of the target (zero ablation of
    SAE latents); ``mean`` sets them to their mean over ``reference`` (prompts, whose real
    tokens are used at each site, or activations ``[..., d_model]``); ``resample`` to those
    of a random reference row for every token (drawn from a generator seeded by ``seed``);
    ``zero`` zeros the whole activation (``target`` may then be ``None``). ``mode="mean"``
    etc. names an operator. Yields the resolved sites.
    """
    if mode is not None:
        if op is not project:
            raise InterpError("give op= or mode=, not both")
        op = mode
    name = op if isinstance(op, str) else getattr(op, "__name__", "")
    op = operator(op)
    if name in _NEEDS_REFERENCE and reference is None:
        raise InterpError(f"op {name!r} needs reference= (prompts, or activations [..., d_model])")
    spec = _check_positions(positions)
    sites = _sites(model, target, site, layers)
    coords = as_target(target, model.d_model)
    refs = _reference(model, reference, sites, coords)
    gen = torch.Generator().manual_seed(seed)
    contexts = {s: OpContext(s, coords, refs.get(s), generator=gen) for s in sites}
    with _intervene(model, spec, op, contexts) as resolved:
        yield resolved


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
    op: Operator = add,
) -> Iterator[list[Site]]:
    """Add ``alpha * scale * direction`` at ``site`` of ``layers`` (the ``add`` operator).

    ``direction`` is used as a unit vector (a :class:`Direction` is one; a tensor is
    normalized). ``scale``: a number, or ``{layer: typical residual norm}`` from
    :func:`residual_norm` so that ``alpha`` is a fraction of the residual norm; default 1.
    ``alpha=0`` leaves every activation bitwise unchanged.
    """
    spec = _check_positions(positions)
    sites = _sites(model, direction, site, layers)
    unit = Basis(_unit(direction, model.d_model)[None])
    contexts = {
        s: OpContext(
            s, unit, amount=_finite(float(alpha) * _scale_at(scale, s.layer), "alpha x scale")
        )
        for s in sites
    }
    with _intervene(model, spec, op, contexts) as resolved:
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
    norms = _reference_rows(model, prompts, sites, lambda x: x.float().norm(dim=-1))
    return {s.layer: float(v.double().mean()) for s, v in norms.items()}


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
