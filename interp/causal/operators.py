"""Ablation and steering operators: small callables under one type.

An :data:`Operator` maps the activation rows an intervention acts on to their
replacement, given what it needs to know at that site::

    op(x: Tensor[..., d_model], ctx: OpContext) -> Tensor[..., d_model]

``ctx.read(x)`` gives the target's coordinates ``[..., k]`` (the projections on a
subspace's orthonormal basis, or the chosen SAE latents); ``ctx.update(x, fn)`` gives
``x`` with those coordinates replaced by ``fn(coordinates)`` and everything else kept
(for SAE latents the SAE's error term too); ``ctx.reference`` holds the coordinates of
a reference set's rows ``[m, k]`` at the site (when one was given), ``ctx.amount`` the
steering amount at the site and ``ctx.generator`` the random stream of the
intervention. The operators:

============  ==========================================================================
``project``   the coordinates set to 0 (projection ablation; zero ablation of latents)
``mean``      set to their mean over the reference rows
``resample``  set to those of a random reference row, drawn for every token
``zero``      the whole activation set to 0 (the target is not used)
``add``       the coordinates moved by ``ctx.amount`` (steering)
============  ==========================================================================

:data:`OPERATORS` names them (``ablate(..., mode="mean")`` is ``op=mean``). A new one is
a function: ``lambda x, ctx: ctx.update(x, lambda c: c.clamp(max=0))`` keeps only the
negative part of the projection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.directions import Direction, Subspace
from interp.errors import InterpError
from interp.sites import Site

__all__ = [
    "OPERATORS",
    "Basis",
    "OpContext",
    "Operator",
    "SAELatents",
    "add",
    "as_target",
    "mean",
    "operator",
    "project",
    "resample",
    "zero",
]

Coordinates = Callable[[Tensor], Tensor]  # [..., k] -> [..., k]


class Basis:
    """A linear target: orthonormal rows ``[k, d_model]``; coordinates are ``x @ basis.T``,
    computed in float32 whatever the model's dtype and rounded once."""

    def __init__(self, basis: Tensor):
        self.basis = basis.detach().float()  # [k, d_model]

    def read(self, x: Tensor) -> Tensor:
        return x.float() @ self.basis.to(x.device).T  # [..., k]

    def update(self, x: Tensor, fn: Coordinates) -> Tensor:
        b = self.basis.to(x.device)
        coords = x.float() @ b.T  # [..., k]
        new = torch.as_tensor(fn(coords), device=x.device, dtype=torch.float32)
        return (x.float() + (new - coords) @ b).to(x.dtype)


@dataclass(frozen=True)
class SAELatents:
    """Latents ``latents`` of a sparse autoencoder (``encode``/``decode``) as a target.

    Their coordinates are the latents' activations; an update changes only those latents'
    decoder contribution: ``x + decode(z_new) - decode(z)`` keeps the SAE error term.
    """

    sae: object
    latents: tuple[int, ...]

    def __init__(self, sae, latents: int | Sequence[int]):
        object.__setattr__(self, "sae", sae)
        lat = (latents,) if isinstance(latents, int) else tuple(int(i) for i in latents)
        object.__setattr__(self, "latents", lat)

    def _encode(self, x: Tensor) -> Tensor:
        sae = self.sae
        params = list(sae.parameters()) if isinstance(sae, torch.nn.Module) else []
        return sae.encode(x.to(params[0].dtype) if params else x)  # [..., d_sae]

    def read(self, x: Tensor) -> Tensor:
        return self._encode(x)[..., list(self.latents)]  # [..., k]

    def update(self, x: Tensor, fn: Coordinates) -> Tensor:
        lat = list(self.latents)
        z = self._encode(x)
        z_new = z.clone()
        z_new[..., lat] = torch.as_tensor(fn(z[..., lat])).to(z.device, z.dtype)
        return x + (self.sae.decode(z_new) - self.sae.decode(z)).to(x.dtype)


@dataclass(frozen=True)
class OpContext:
    """What an operator knows at one site (see the module docstring)."""

    site: Site
    target: Basis | SAELatents | None = None
    reference: Tensor | None = None  # [m, k] coordinates of the reference rows
    amount: float = 0.0  # steering: alpha * scale at this site
    generator: torch.Generator | None = None

    def read(self, x: Tensor) -> Tensor:
        return self._target().read(x)

    def update(self, x: Tensor, fn: Coordinates) -> Tensor:
        return self._target().update(x, fn)

    def reference_rows(self) -> Tensor:
        if self.reference is None:
            raise InterpError("this operator needs reference= (prompts, or activations [..., d])")
        return self.reference

    def _target(self):
        if self.target is None:
            raise InterpError("this operator needs a target (a direction, subspace or latents)")
        return self.target


Operator = Callable[[Tensor, OpContext], Tensor]  # ([..., d_model], ctx) -> [..., d_model]


def project(x: Tensor, ctx: OpContext) -> Tensor:
    """The target's coordinates set to 0: ``x - B^T B x`` for a basis ``B``."""
    return ctx.update(x, torch.zeros_like)


def mean(x: Tensor, ctx: OpContext) -> Tensor:
    """The coordinates set to their mean over the reference rows (float64 mean)."""
    mu = ctx.reference_rows().double().mean(0).float()  # [k]
    return ctx.update(x, lambda c: mu.to(c.device, c.dtype).expand_as(c))


def resample(x: Tensor, ctx: OpContext) -> Tensor:
    """The coordinates of every token set to those of a random reference row."""
    ref = ctx.reference_rows()  # [m, k]
    rows = torch.randint(0, ref.shape[0], x.shape[:-1], generator=ctx.generator)
    return ctx.update(x, lambda c: ref[rows].to(c.device, c.dtype))


def zero(x: Tensor, ctx: OpContext) -> Tensor:
    """The whole activation set to 0 (zero ablation of the site)."""
    return torch.zeros_like(x)


def add(x: Tensor, ctx: OpContext) -> Tensor:
    """The coordinates moved by ``ctx.amount`` (steering along a unit direction)."""
    return ctx.update(x, lambda c: c + ctx.amount)


def _check_finite(t: Tensor) -> None:
    """Before orthonormalizing: a NaN would otherwise fail inside the QR, unclearly."""
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


def as_target(target, d_model: int) -> Basis | SAELatents | None:
    """What the operators read and update: SAE latents as given, else the orthonormal basis
    of a :class:`Direction`, a :class:`Subspace`, a tensor ``[d]`` / ``[k, d]`` or a list
    of either (orthonormalized jointly)."""
    if target is None or isinstance(target, SAELatents):
        return target
    basis = _basis(target)
    if basis.shape[-1] != d_model:
        raise InterpError(f"target has d={basis.shape[-1]}, the model has d_model={d_model}")
    if not torch.isfinite(basis).all():
        raise InterpError("the ablation target has non-finite entries (NaN or inf)")
    return Basis(basis)


OPERATORS: dict[str, Operator] = {
    "project": project,
    "mean": mean,
    "resample": resample,
    "zero": zero,
    "add": add,
}


def operator(op: Operator | str) -> Operator:
    """``op`` itself, or the operator :data:`OPERATORS` names (a clear error otherwise)."""
    if callable(op):
        return op
    if op not in OPERATORS:
        raise InterpError(f"mode must be one of {', '.join(OPERATORS)}, got {op!r}")
    return OPERATORS[op]
