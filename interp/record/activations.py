"""Captured activations: one tensor, its site names and a metadata table.

``Activations.tensor`` is ``[n_rows, n_sites, d_model]``; each row is one (prompt,
position) pair described by the matching row of ``meta`` (columns ``prompt``,
``position``, ``token_id`` and the prompt set's own columns such as ``year``).
Rows are selected by metadata (``acts.where(year=1984)``), sites by name, kind or layer
(``acts.site(6)``; ``acts.sites`` are :class:`~interp.sites.Site` values, names on disk),
and the whole object saves to safetensors + JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import Tensor

from interp.errors import InterpError
from interp.integrity import read_json, read_safetensors, seal, verify
from interp.sites import SITE_KINDS, Site, site_index

__all__ = ["Activations", "site_index"]


@dataclass
class Activations:
    """Activations at several sites, one row per (prompt, position).

    ``tensor`` is ``[n_rows, n_sites, d_model]``; ``sites`` names its columns
    (``blocks.{l}.hook_{kind}``, in forward order); ``meta`` has one row per tensor row
    (``prompt``, ``position``, ``token_id`` and the prompt set's own columns). Made by
    :func:`interp.capture` or :meth:`ActivationStore.load`, not by hand.
    """

    tensor: Tensor  # [n_rows, n_sites, d_model]
    sites: tuple[Site, ...]  # canonical names, parsed on construction
    meta: pd.DataFrame
    model_name: str = ""
    adapter_hash: str | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sites = tuple(Site.parse(s) for s in self.sites)
        if self.tensor.ndim != 3 or self.tensor.shape[1] != len(self.sites):
            raise InterpError(
                f"tensor of shape {tuple(self.tensor.shape)} does not match {len(self.sites)} sites"
            )
        if len(self.meta) != self.tensor.shape[0]:
            raise InterpError(
                f"{len(self.meta)} metadata rows for {self.tensor.shape[0]} tensor rows"
            )
        self.meta = self.meta.reset_index(drop=True)

    # ---- shape -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.tensor.shape[0]

    @property
    def d_model(self) -> int:
        return self.tensor.shape[-1]

    @property
    def layers(self) -> list[int]:
        return sorted({s.layer for s in self.sites})

    @property
    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.sites}, key=SITE_KINDS.index)

    def __repr__(self) -> str:
        return (
            f"Activations(rows={len(self)}, sites={len(self.sites)} "
            f"[{self.sites[0]} .. {self.sites[-1]}], d_model={self.d_model}, "
            f"meta={list(self.meta.columns)})"
        )

    # ---- selection -------------------------------------------------------------------
    def site_index(self, key: str | int | Site) -> int:
        return site_index(self.sites, key)

    def site(self, key: str | int | Site) -> Tensor:
        """``[n_rows, d_model]`` at one site (a name, a layer when one kind was captured)."""
        return self.tensor[:, self.site_index(key)]

    def select(self, rows) -> Activations:
        """Rows by boolean mask or integer index (tensor, array, list or Series)."""
        if isinstance(rows, pd.Series):
            rows = rows.to_numpy()
        idx = torch.as_tensor(np.asarray(rows))
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.long()
        return Activations(
            self.tensor[idx],
            self.sites,
            self.meta.iloc[idx.numpy()],
            self.model_name,
            self.adapter_hash,
            dict(self.info),
        )

    def where(self, mask=None, **equals) -> Activations:
        """Rows whose metadata match: ``where(year=1984)``, ``where(year=[1984, 1985])``."""
        keep = np.ones(len(self), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        for col, value in equals.items():
            if col not in self.meta.columns:
                raise InterpError(
                    f"no metadata column {col!r} (columns: {list(self.meta.columns)})"
                )
            column = self.meta[col]
            if isinstance(value, (list, tuple, set, range)):
                keep &= column.isin(list(value)).to_numpy()
            else:
                keep &= (column == value).to_numpy()
        return self.select(keep)

    def sites_subset(self, keys) -> Activations:
        idx = [self.site_index(k) for k in keys]
        return Activations(
            self.tensor[:, idx],
            [self.sites[i] for i in idx],
            self.meta,
            self.model_name,
            self.adapter_hash,
            dict(self.info),
        )

    # ---- files -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``acts.safetensors`` and ``acts.json`` (sites, metadata, provenance)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"tensor": self.tensor.contiguous()}, str(path / "acts.safetensors"))
        header = {
            "sites": list(self.sites),
            "model_name": self.model_name,
            "adapter_hash": self.adapter_hash,
            "info": self.info,
            "meta": json.loads(self.meta.to_json(orient="split", index=False)),
        }
        (path / "acts.json").write_text(json.dumps(seal(header, path / "acts.safetensors")))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Activations:
        path = Path(path)
        header = verify(
            read_json(path / "acts.json"), path / "acts.safetensors", path / "acts.json"
        )
        meta = header["meta"]
        return cls(
            read_safetensors(path / "acts.safetensors")["tensor"],
            header["sites"],
            pd.DataFrame(meta["data"], columns=meta["columns"]),
            header["model_name"],
            header["adapter_hash"],
            header["info"],
        )

    @classmethod
    def concat(cls, parts: list[Activations]) -> Activations:
        if not parts:
            raise InterpError("nothing to concatenate")
        first = parts[0]
        if any(p.sites != first.sites for p in parts):
            raise InterpError("cannot concatenate activations captured at different sites")
        return cls(
            torch.cat([p.tensor for p in parts]),
            first.sites,
            pd.concat([p.meta for p in parts], ignore_index=True),
            first.model_name,
            first.adapter_hash,
            dict(first.info),
        )
