"""Canonical activation sites and the table that maps them to Hugging Face modules.

Sites are named as in TransformerLens: ``blocks.{layer}.hook_{kind}`` where ``kind`` is
one of ``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``. Each architecture
family is one row of :data:`FAMILIES` saying where its blocks live and which module's
output is the attention / MLP contribution to the residual stream. Supporting a new
family is adding a row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from interp.errors import LayerOutOfRangeError, SiteError, UnsupportedArchitectureError

__all__ = ["SITE_KINDS", "Family", "FAMILIES", "Site", "family_for", "resolve_sites"]

# Order in which the sites of one block are computed during a forward pass.
SITE_KINDS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_post")

_SITE_RE = re.compile(r"^blocks\.(-?\d+)\.hook_([a-z_]+)$")


@dataclass(frozen=True)
class Family:
    """Where one architecture family keeps its pieces (dotted module paths).

    ``attn`` and ``mlp`` are paths inside a block whose *output* is what that sublayer
    adds to the residual stream (for sandwich-norm models such as Gemma 2 that is the
    post-norm, not the attention module itself).
    """

    layers: str
    attn: str
    mlp: str
    final_norm: str
    embed: str


_LLAMA = Family("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens")
_GEMMA2 = Family(
    "model.layers",
    "post_attention_layernorm",
    "post_feedforward_layernorm",
    "model.norm",
    "model.embed_tokens",
)

# One row per Hugging Face ``config.model_type``.
FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA2,
    "gpt2": Family("transformer.h", "attn", "mlp", "transformer.ln_f", "transformer.wte"),
    "gpt_neox": Family(
        "gpt_neox.layers", "attention", "mlp", "gpt_neox.final_layer_norm", "gpt_neox.embed_in"
    ),
}
"""The architecture table: Hugging Face ``config.model_type`` -> :class:`Family` row.

Supporting another architecture is adding a row here (and a tiny model of it to
``interp.testing`` so the tests compare it against plain Hugging Face outputs).
"""


def family_for(model_type: str) -> Family:
    """The :class:`Family` row for a ``config.model_type``; a clear error if there is none."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} has no row in interp.sites.FAMILIES (known: {known}); "
            "add one to support it"
        ) from None


@dataclass(frozen=True, order=True)
class Site:
    """One activation site: a layer and a kind. Ordered as computed in a forward pass."""

    layer: int
    kind_rank: int

    @property
    def kind(self) -> str:
        return SITE_KINDS[self.kind_rank]

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def make(cls, layer: int, kind: str, n_layers: int) -> Site:
        """Build a site, normalizing a negative ``layer`` and checking both parts."""
        if kind not in SITE_KINDS:
            raise SiteError(f"unknown site kind {kind!r}; expected one of {', '.join(SITE_KINDS)}")
        if not -n_layers <= layer < n_layers:
            raise LayerOutOfRangeError(
                f"layer {layer} is out of range for a model with {n_layers} layers "
                f"(valid: {-n_layers}..{n_layers - 1})"
            )
        return cls(layer % n_layers, SITE_KINDS.index(kind))

    @classmethod
    def parse(cls, name: str, n_layers: int) -> Site:
        """Parse ``blocks.{l}.hook_{kind}`` (negative ``l`` allowed)."""
        m = _SITE_RE.match(name)
        if m is None:
            raise SiteError(
                f"unknown site {name!r}; expected 'blocks.{{layer}}.hook_{{kind}}' or a short "
                f"kind ({', '.join(SITE_KINDS)}) with layers="
            )
        return cls.make(int(m.group(1)), m.group(2), n_layers)


def resolve_sites(
    sites: str | Site | Iterable[str | Site],
    n_layers: int,
    layers: int | Iterable[int] | None = None,
) -> list[Site]:
    """Resolve full names, short kinds and ``layers=`` into sorted, unique sites.

    ``resolve_sites("resid_post", 8, layers=[0, -1])`` gives layers 0 and 7;
    ``resolve_sites("blocks.-1.hook_mlp_out", 8)`` gives layer 7. A short kind without
    ``layers`` means every layer.
    """
    items: Sequence[str | Site] = [sites] if isinstance(sites, (str, Site)) else list(sites)
    if not items:
        raise SiteError("no sites requested")
    if layers is None:
        layer_list = list(range(n_layers))
    elif isinstance(layers, int) and not isinstance(layers, bool):
        layer_list = [layers]
    else:
        try:
            layer_list = list(layers)
        except TypeError:
            raise SiteError(f"layers must be an int or a list of ints, got {layers!r}") from None
    if any(isinstance(x, bool) or not isinstance(x, int) for x in layer_list):
        raise SiteError(f"layers must be ints, got {layers!r}")
    out: set[Site] = set()
    for item in items:
        if isinstance(item, Site):
            out.add(Site.make(item.layer, item.kind, n_layers))
        elif item.startswith("blocks."):
            out.add(Site.parse(item, n_layers))
        else:
            kind = item.removeprefix("hook_")
            out.update(Site.make(layer, kind, n_layers) for layer in layer_list)
    return sorted(out)
