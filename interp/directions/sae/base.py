"""The SAE base: config + module shared by every architecture, and the on-disk format.

An SAE maps ``x`` ``[..., d_in]`` to latents ``f`` ``[..., d_sae]`` and back::

    pre  = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc     # [..., d_sae]
    f    = activation(pre)                                         # per architecture
    xhat = f @ W_dec + b_dec                                       # [..., d_in]

Parameter names and shapes follow sae-lens (``W_enc`` ``[d_in, d_sae]``, ``W_dec``
``[d_sae, d_in]``), and :meth:`SAE.save` writes the sae-lens layout (``cfg.json`` +
``sae_weights.safetensors``), so a saved interp SAE is also a sae-lens directory.
Each architecture is one module that defines its config and its class, sets
``architecture``, ``config_cls``, :meth:`SAE.activation` and :meth:`SAE.training_loss`,
and registers the class under its architecture name with :func:`register`
(:data:`ARCHITECTURES` is the registry; ``cfg.json`` names the architecture).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from interp.config import Config, from_dict
from interp.directions import Direction
from interp.errors import ConfigError, InterpError
from interp.sites import Site

if TYPE_CHECKING:
    from interp.directions.sae.train import SAETrainConfig

__all__ = [
    "ARCHITECTURES",
    "SAEConfig",
    "SAE",
    "CFG_FILENAME",
    "WEIGHTS_FILENAME",
    "register",
    "finish_load",
    "load_checked",
]

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"


# architecture name (as written in cfg.json) -> SAE class; filled by :func:`register`
ARCHITECTURES: dict[str, type[SAE]] = {}


def register(*aliases: str) -> Callable[[type[SAE]], type[SAE]]:
    """Class decorator: put an SAE class in :data:`ARCHITECTURES` under its
    ``architecture`` name and ``aliases``."""

    def add(cls: type[SAE]) -> type[SAE]:
        for name in (cls.architecture, *aliases):
            ARCHITECTURES[name] = cls
        return cls

    return add


@dataclass(frozen=True)
class SAEConfig(Config):
    """What every SAE needs: sizes, whether ``b_dec`` is subtracted first, and its site."""

    d_in: int
    d_sae: int
    apply_b_dec_to_input: bool = True
    site: Site | None = None
    model_name: str | None = None

    architecture: ClassVar[str] = "base"
    config_name: ClassVar[str] = "SAE config"

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", Site.optional(self.site))

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, **super().to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> SAEConfig:
        """Strict (see :mod:`interp.config`); ``SAEConfig.from_dict`` builds the config of
        the architecture ``d`` names."""
        d = dict(d)
        arch = d.pop("architecture", cls.architecture)
        if cls is SAEConfig and arch in ARCHITECTURES:
            cls = ARCHITECTURES[arch].config_cls
        elif ARCHITECTURES.get(arch, SAE).config_cls is not cls and arch != cls.architecture:
            raise ConfigError(f"an {arch!r} SAE config given to {cls.__name__}")
        return from_dict(cls, d)


class SAE(nn.Module):
    """Base sparse autoencoder (inference). See the module docstring for the maths."""

    architecture: ClassVar[str] = "base"
    config_cls: ClassVar[type[SAEConfig]] = SAEConfig

    def __init__(self, cfg: SAEConfig, *, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.randn(cfg.d_sae, cfg.d_in, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)  # [d_sae, d_in]
        self.W_enc = nn.Parameter(w.T.clone())  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    # ---- the forward pass --------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        """``[..., d_in]`` -> pre-activations ``[..., d_sae]``."""
        if x.shape[-1] != self.cfg.d_in:
            raise InterpError(
                f"this SAE reads vectors of size d_in={self.cfg.d_in} "
                f"(site {self.cfg.site!r}); got activations of size {x.shape[-1]}"
            )
        x = x.to(device=self.W_enc.device, dtype=self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- training ----------------------------------------------------------------------
    def training_loss(self, x: Tensor, cfg: SAETrainConfig) -> tuple[Tensor, Tensor]:
        """``(loss, latents [batch, d_sae])`` of one training batch ``x`` ``[batch, d_in]``.
        Each trainable architecture defines its own; this one says it is not trainable."""
        raise InterpError(f"interp does not train {self.architecture} SAEs (it loads them)")

    def reconstruction_loss(self, x: Tensor, f: Tensor) -> Tensor:
        """``|x - decode(f)|^2`` summed over ``d_in``, averaged over rows (a scalar)."""
        return ((self.decode(f) - x) ** 2).sum(-1).mean()

    def training_statistic(self, f: Tensor) -> float | None:
        """A number to keep from a late training step's latents (default: none)."""
        return None

    def finish_training(self, statistics: list[float]) -> None:
        """Set inference-only state from the kept :meth:`training_statistic` values."""

    def encode(self, x: Tensor) -> Tensor:
        """Latent activations ``[..., d_sae]`` of ``x`` ``[..., d_in]``."""
        return self.activation(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        """Reconstruction ``[..., d_in]`` from latents ``[..., d_sae]``."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ---- directions --------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def decoder_directions(self) -> Tensor:
        """Unit decoder rows ``[d_sae, d_in]`` (what each latent writes)."""
        w = self.W_dec.detach()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def direction(self, latent: int, *, name: str | None = None) -> Direction:
        """The decoder direction of one latent as a :class:`Direction`."""
        return Direction(
            self.W_dec.detach()[latent].float().cpu(),
            site=self.cfg.site,
            name=name or f"{self.architecture}-sae:{latent}",
            provenance={
                "method": "sae_decoder",
                "latent": int(latent),
                "architecture": self.architecture,
                "model_name": self.cfg.model_name,
                "d_sae": self.d_sae,
            },
        )

    def extra_state(self) -> dict[str, Tensor]:
        """Tensors besides the four weight matrices that the file must keep."""
        return {}

    # ---- files -------------------------------------------------------------------------
    def sae_lens_cfg(self) -> dict:
        """``cfg.json`` in the sae-lens v6 schema (plus interp's own fields)."""
        cfg = self.cfg.to_dict()
        layer = None if self.cfg.site is None else self.cfg.site.layer
        cfg.update(
            {
                "architecture": self.architecture,
                "dtype": str(self.W_enc.dtype).removeprefix("torch."),
                "device": "cpu",
                "normalize_activations": "none",
                "reshape_activations": "none",
                "metadata": {
                    "hook_name": cfg["site"],
                    "hook_layer": layer,
                    "model_name": self.cfg.model_name,
                },
            }
        )
        return cfg

    def save(self, path: str | Path) -> Path:
        """Write ``path/cfg.json`` and ``path/sae_weights.safetensors`` (sae-lens layout)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {
            "W_enc": self.W_enc,
            "b_enc": self.b_enc,
            "W_dec": self.W_dec,
            "b_dec": self.b_dec,
            **self.extra_state(),
        }
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(path / WEIGHTS_FILENAME),
        )
        (path / CFG_FILENAME).write_text(json.dumps(self.sae_lens_cfg(), indent=2))
        return path

    def load_tensors(self, tensors: dict[str, Tensor]) -> SAE:
        """Copy ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec`` (+ extra state) in; returns self."""
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                param = getattr(self, name)
                value = tensors[name]
                if tuple(value.shape) != tuple(param.shape):
                    raise InterpError(
                        f"{name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}"
                    )
                param.data = value.detach().clone().to(param.dtype)
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(d_in={self.d_in}, d_sae={self.d_sae}, site={self.cfg.site!r})"
        )


def finish_load(sae: SAE, dtype: torch.dtype | None, device) -> SAE:
    """A loaded ``sae`` in ``dtype`` on ``device`` (as it is where ``None``), in eval mode."""
    if dtype is not None or device is not None:
        sae = sae.to(device=device, dtype=dtype)
    return sae.eval()


def load_checked(sae: SAE, tensors: dict, where: Path) -> SAE:
    """``sae.load_tensors(tensors)`` with missing tensors and wrong shapes as one line."""
    need = ["W_enc", "b_enc", "W_dec", "b_dec", *sae.extra_state()]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise InterpError(f"{where}: the weights lack {missing} (a {sae.architecture} SAE)")
    try:
        return sae.load_tensors(tensors)
    except ValueError as e:  # a shape that does not fit the config
        raise InterpError(f"{where}: {e} (from d_in={sae.d_in}, d_sae={sae.d_sae})") from None
