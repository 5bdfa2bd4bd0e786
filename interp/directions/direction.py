"""The :class:`Direction` value object, cosine similarity, and direction files.

See :mod:`interp.directions` for the overview.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from interp.errors import InterpError, SiteError
from interp.integrity import read_json, read_safetensors, seal, verify
from interp.sites import Site

__all__ = ["Direction", "cosine", "save_directions", "load_directions"]

_EPS = 1e-12


def _place(layer: int | None, site: str | None) -> tuple[int | None, Site | None]:
    """Parse ``site`` (a canonical name) and check ``layer`` against it, or fill it from it."""
    try:
        parsed = Site.optional(site)
    except SiteError:
        raise SiteError(
            f"site {site!r} is not a canonical name like 'blocks.3.hook_resid_post'"
        ) from None
    if layer is None:
        return (None if parsed is None else parsed.layer), parsed
    layer = int(layer)
    if parsed is not None and parsed.layer != layer:
        raise InterpError(f"layer={layer} disagrees with site {site!r}")
    return layer, parsed


def _as_vector(vector: Tensor | Sequence[float]) -> Tensor:
    v = torch.as_tensor(vector).detach()
    if not v.is_floating_point():
        v = v.to(torch.float32)
    if v.ndim != 1:
        raise InterpError(f"a direction is a 1-D vector [d_model]; got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise InterpError("a direction must be finite (got NaN or inf)")
    return v


def _common_place(items: Iterable) -> tuple[int | None, Site | None]:
    """The one layer and site that ``items`` share (``None`` entries match anything)."""
    found: dict[str, object] = {"layer": None, "site": None}
    for item in items:
        for attr in found:
            value = getattr(item, attr)
            if value is None:
                continue
            if found[attr] is not None and found[attr] != value:
                raise InterpError(
                    f"cannot combine directions at different {attr}s: {found[attr]!r} and {value!r}"
                )
            found[attr] = value
    return found["layer"], found["site"]  # type: ignore[return-value]


class Direction:
    """A unit vector at one site, with a name and provenance.

    ``Direction(v, layer=3, site="blocks.3.hook_resid_post", name="era")`` stores
    ``v / |v|`` as :attr:`vector` and ``|v|`` as :attr:`scale` (unless ``scale`` is given).
    ``site`` (a canonical name) is kept as a :class:`~interp.sites.Site`; ``layer`` is
    filled from it when omitted.
    """

    __slots__ = ("vector", "layer", "site", "name", "provenance", "scale")

    vector: Tensor  # [d_model], unit norm
    layer: int | None
    site: Site | None
    name: str
    provenance: dict
    scale: float

    def __init__(
        self,
        vector: Tensor | Sequence[float],
        *,
        layer: int | None = None,
        site: str | None = None,
        name: str = "direction",
        provenance: dict | None = None,
        scale: float | None = None,
    ) -> None:
        v = _as_vector(vector)
        norm = float(v.double().norm())
        if norm < _EPS:
            raise InterpError(f"direction {name!r} has zero norm; nothing to point along")
        layer, site = _place(layer, site)
        object.__setattr__(self, "vector", v / norm)
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "site", site)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "provenance", dict(provenance or {}))
        object.__setattr__(self, "scale", float(norm if scale is None else scale))

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict) -> None:  # copy / deepcopy / pickle
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("Direction is immutable; use .replace(...)")

    # ---- properties -------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return self.vector.shape[0]

    @property
    def raw(self) -> Tensor:
        """``scale * vector`` ``[d_model]``: the vector the direction was made from."""
        return self.vector * self.scale

    def replace(self, **changes) -> Direction:
        """A copy with some fields changed (``vector``, ``layer``, ``site``, ``name``, ...)."""
        fields = dict(
            vector=self.vector,
            layer=self.layer,
            site=self.site,
            name=self.name,
            provenance=self.provenance,
            scale=self.scale,
        )
        if "vector" in changes and "scale" not in changes:
            fields["scale"] = None
        if "site" in changes and "layer" not in changes:
            fields["layer"] = None
        fields.update(changes)
        return Direction(fields.pop("vector"), **fields)

    def __repr__(self) -> str:
        where = self.site or (f"layer {self.layer}" if self.layer is not None else "no site")
        return f"Direction({self.name!r}, d_model={self.d_model}, {where}, scale={self.scale:.4g})"

    # ---- arithmetic (on scale * vector; results are re-normalized) --------------------
    def _combine(self, other: Direction, sign: float, op: str) -> Direction:
        if not isinstance(other, Direction):
            return NotImplemented
        layer, site = _common_place([self, other])
        raw = self.raw + sign * other.raw.to(self.vector)
        return Direction(
            raw,
            layer=layer,
            site=site,
            name=f"({self.name} {op} {other.name})",
            provenance={"op": op, "operands": [self.to_dict(), other.to_dict()]},
        )

    def __add__(self, other: Direction) -> Direction:
        return self._combine(other, 1.0, "+")

    def __sub__(self, other: Direction) -> Direction:
        return self._combine(other, -1.0, "-")

    def __neg__(self) -> Direction:
        return self.replace(vector=-self.vector, scale=self.scale, name=f"-{self.name}")

    def __mul__(self, k: float) -> Direction:
        if isinstance(k, Tensor) and k.numel() == 1:
            k = float(k)
        if not isinstance(k, (int, float)):
            return NotImplemented
        if k == 0:
            raise InterpError("scaling a direction by 0 leaves nothing to point along")
        sign = 1.0 if k > 0 else -1.0
        return self.replace(vector=sign * self.vector, scale=abs(k) * self.scale)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Direction:
        return self * (1.0 / k)

    # ---- geometry ---------------------------------------------------------------------
    def cosine(self, other: Direction | Tensor) -> float:
        """Cosine similarity with another direction or a vector ``[d_model]``."""
        return cosine(self, other)

    def project(self, x: Tensor) -> Tensor:
        """Scalar projection of ``x`` ``[..., d_model]`` onto the unit vector: ``[...]``."""
        return x @ self.vector.to(x)

    def remove(self, x: Tensor) -> Tensor:
        """``x`` ``[..., d_model]`` with its component along the direction removed."""
        v = self.vector.to(x)
        return x - (x @ v)[..., None] * v

    def to(self, *args, **kwargs) -> Direction:
        """A copy on another device / dtype (same arguments as ``Tensor.to``)."""
        return self.replace(vector=self.vector.to(*args, **kwargs).clone(), scale=self.scale)

    # ---- files ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything but the vector, JSON-ready."""
        return {
            "name": self.name,
            "layer": self.layer,
            "site": self.site,
            "scale": self.scale,
            "d_model": self.d_model,
            "provenance": json.loads(json.dumps(self.provenance, default=str)),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json``; returns the safetensors path."""
        return save_directions([self], path)

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        dirs = load_directions(path)
        if len(dirs) != 1:
            raise InterpError(f"{path} holds {len(dirs)} directions; use load_directions()")
        return dirs[0]


def cosine(a: Direction | Tensor, b: Direction | Tensor) -> float:
    """Cosine similarity of two directions or vectors ``[d_model]``."""
    va = a.vector if isinstance(a, Direction) else torch.as_tensor(a).detach()
    vb = b.vector if isinstance(b, Direction) else torch.as_tensor(b).detach()
    va, vb = va.double().flatten(), vb.double().flatten().to(va.device)
    if va.shape != vb.shape:
        raise InterpError(f"cosine of vectors of different sizes: {va.shape[0]} and {vb.shape[0]}")
    return float(va @ vb / (va.norm() * vb.norm()).clamp_min(_EPS))


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_directions(directions: Sequence[Direction], path: str | Path) -> Path:
    """Write ``directions`` to ``<path>.safetensors`` (vectors) + ``<path>.json`` (the rest)."""
    dirs = list(directions)
    if not dirs:
        raise InterpError("nothing to save")
    st, js = _paths(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"vector.{i}": d.vector.detach().cpu().contiguous() for i, d in enumerate(dirs)}
    save_file(tensors, str(st))
    meta = seal({"kind": "directions", "directions": [d.to_dict() for d in dirs]}, st)
    js.write_text(json.dumps(meta, indent=2))
    return st


_FIELDS = ("name", "layer", "site", "scale", "provenance")


def load_directions(path: str | Path) -> list[Direction]:
    """Read what :func:`save_directions` (or :meth:`Direction.save`) wrote.

    The checksums in the JSON are verified first: a changed or corrupted file is an
    :class:`~interp.errors.IntegrityError`, never a silently different direction.
    """
    st, js = _paths(path)
    meta = read_json(js, "direction file")
    if not isinstance(meta, dict) or meta.get("kind") != "directions":
        raise InterpError(f"{js} does not describe directions")
    verify(meta, st, js)
    tensors = read_safetensors(st, "direction vectors")
    entries = meta.get("directions")
    if not isinstance(entries, list) or not entries:
        raise InterpError(f"{js}: 'directions' must be a non-empty list")
    out = []
    for i, m in enumerate(entries):
        missing = [k for k in _FIELDS if not isinstance(m, dict) or k not in m]
        if missing:
            raise InterpError(f"{js}: direction {i} lacks {missing}")
        if f"vector.{i}" not in tensors:
            raise InterpError(f"{st} holds no vector.{i} for direction {i} of {js}")
        out.append(
            Direction(
                tensors[f"vector.{i}"],
                layer=m["layer"],
                site=m["site"],
                name=m["name"],
                provenance=m["provenance"],
                scale=m["scale"],
            )
        )
    return out
