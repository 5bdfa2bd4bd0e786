"""The :class:`Subspace` value object: an orthonormal basis for joint projection and removal.

See :mod:`interp.directions` for the overview.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from interp.directions.direction import _EPS, Direction, _common_place, _paths, _place
from interp.errors import InterpError
from interp.integrity import read_json, read_safetensors, seal, verify
from interp.sites import Site

__all__ = ["Subspace"]


class Subspace:
    """An orthonormal basis ``[k, d_model]`` for joint projection and removal.

    Build it with :meth:`from_directions` or :meth:`from_tensor`: both orthonormalize by
    SVD and drop directions that are (numerically) linear combinations of the others, so
    the projector ``basis.T @ basis`` is the same whatever the order of the inputs.
    """

    __slots__ = ("basis", "layer", "site", "name", "provenance")

    basis: Tensor  # [k, d_model], orthonormal rows
    layer: int | None
    site: Site | None
    name: str
    provenance: dict

    def __init__(
        self,
        basis: Tensor,
        *,
        layer: int | None = None,
        site: str | None = None,
        name: str = "subspace",
        provenance: dict | None = None,
        check: bool = True,
    ) -> None:
        b = torch.as_tensor(basis).detach()
        if not b.is_floating_point():
            b = b.to(torch.float32)
        if b.ndim != 2 or b.shape[0] == 0:
            raise InterpError(f"a subspace basis is [k, d_model] with k >= 1; got {tuple(b.shape)}")
        if check:
            gram = b.double() @ b.double().T
            eye = torch.eye(b.shape[0], dtype=torch.float64, device=b.device)
            tol = 1e-3 if b.dtype in (torch.float16, torch.bfloat16) else 1e-5
            if not torch.allclose(gram, eye, atol=tol):
                raise InterpError(
                    "basis rows are not orthonormal; build with Subspace.from_tensor(...)"
                )
        layer, site = _place(layer, site)
        object.__setattr__(self, "basis", b)
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "site", site)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "provenance", dict(provenance or {}))

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict) -> None:  # copy / deepcopy / pickle
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("Subspace is immutable")

    @classmethod
    def from_tensor(
        cls,
        vectors: Tensor,
        *,
        rtol: float = 1e-6,
        layer: int | None = None,
        site: str | None = None,
        name: str = "subspace",
        provenance: dict | None = None,
    ) -> Subspace:
        """Orthonormal basis of the row span of ``vectors`` ``[n, d_model]`` (by SVD).

        Rows are unit-normalized first (so scale does not weigh in); singular values below
        ``rtol`` times the largest are dropped.
        """
        v = torch.as_tensor(vectors).detach()
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[0] == 0:
            raise InterpError(f"expected vectors [n, d_model]; got shape {tuple(v.shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise InterpError("a subspace must be spanned by finite vectors (got NaN or inf)")
        dtype = v.dtype if v.is_floating_point() else torch.float32
        v64 = v.double()
        norms = v64.norm(dim=1, keepdim=True)
        if (norms < _EPS).any():
            raise InterpError("a zero vector cannot span anything")
        _, s, vh = torch.linalg.svd(v64 / norms, full_matrices=False)
        keep = s > rtol * s[0]
        basis = vh[keep]  # [k, d_model]
        return cls(
            basis.to(dtype),
            layer=layer,
            site=site,
            name=name,
            provenance=provenance,
            check=False,
        )

    @classmethod
    def from_directions(
        cls,
        directions: Iterable[Direction],
        *,
        rtol: float = 1e-6,
        name: str | None = None,
    ) -> Subspace:
        """The span of ``directions`` (which must share one site / layer)."""
        dirs = list(directions)
        if not dirs:
            raise InterpError("Subspace.from_directions needs at least one direction")
        layer, site = _common_place(dirs)
        device, dtype = dirs[0].vector.device, dirs[0].vector.dtype
        stacked = torch.stack([d.vector.to(device=device, dtype=dtype) for d in dirs])
        return cls.from_tensor(
            stacked,
            rtol=rtol,
            layer=layer,
            site=site,
            name=name or "+".join(d.name for d in dirs),
            provenance={"directions": [d.to_dict() for d in dirs]},
        )

    # ---- properties -------------------------------------------------------------------
    @property
    def k(self) -> int:
        return self.basis.shape[0]

    @property
    def d_model(self) -> int:
        return self.basis.shape[1]

    def __len__(self) -> int:
        return self.k

    def __repr__(self) -> str:
        where = self.site or (f"layer {self.layer}" if self.layer is not None else "no site")
        return f"Subspace({self.name!r}, k={self.k}, d_model={self.d_model}, {where})"

    def projector(self) -> Tensor:
        """``basis.T @ basis`` ``[d_model, d_model]``."""
        return self.basis.T @ self.basis

    def coordinates(self, x: Tensor) -> Tensor:
        """Coordinates of ``x`` ``[..., d_model]`` in the basis: ``[..., k]``."""
        return x @ self.basis.to(x).T

    def project(self, x: Tensor) -> Tensor:
        """Component of ``x`` ``[..., d_model]`` inside the subspace, ``[..., d_model]``."""
        b = self.basis.to(x)
        return (x @ b.T) @ b

    def remove(self, x: Tensor) -> Tensor:
        """``x`` ``[..., d_model]`` with its component inside the subspace removed."""
        return x - self.project(x)

    def to(self, *args, **kwargs) -> Subspace:
        return Subspace(
            self.basis.to(*args, **kwargs).clone(),
            layer=self.layer,
            site=self.site,
            name=self.name,
            provenance=self.provenance,
            check=False,
        )

    def directions(self) -> list[Direction]:
        """The basis rows as directions."""
        return [
            Direction(row, layer=self.layer, site=self.site, name=f"{self.name}[{i}]")
            for i, row in enumerate(self.basis)
        ]

    # ---- files ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "layer": self.layer,
            "site": self.site,
            "k": self.k,
            "d_model": self.d_model,
            "provenance": json.loads(json.dumps(self.provenance, default=str)),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` (the basis) and ``<path>.json``."""
        st, js = _paths(path)
        st.parent.mkdir(parents=True, exist_ok=True)
        save_file({"basis": self.basis.detach().cpu().contiguous()}, str(st))
        js.write_text(json.dumps(seal({"kind": "subspace", **self.to_dict()}, st), indent=2))
        return st

    @classmethod
    def load(cls, path: str | Path) -> Subspace:
        """Read what :meth:`save` wrote (checksums verified first)."""
        st, js = _paths(path)
        meta = read_json(js, "subspace file")
        if not isinstance(meta, dict) or meta.get("kind") != "subspace":
            raise InterpError(f"{js} does not describe a subspace")
        verify(meta, st, js)
        missing = [k for k in ("layer", "site", "name", "provenance") if k not in meta]
        if missing:
            raise InterpError(f"{js}: the subspace header lacks {missing}")
        tensors = read_safetensors(st, "subspace basis")
        if "basis" not in tensors:
            raise InterpError(f"{st} holds no 'basis' tensor")
        return cls(
            tensors["basis"],
            layer=meta["layer"],
            site=meta["site"],
            name=meta["name"],
            provenance=meta["provenance"],
        )
