"""Canonical activation sites and the table that maps them to Hugging Face modules.

Sites are named as in TransformerLens: ``blocks.{layer}.hook_{kind}`` where ``kind`` is
one of ``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``. Each architecture
family is one row of :data:`FAMILIES` saying where its blocks live and which module's
output is the attention / MLP contribution to the residual stream. Supporting a new
family is adding a row.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from interp.errors import LayerOutOfRangeError, SiteError, UnsupportedArchitectureError

__all__ = [
    "SITE_KINDS",
    "Family",
    "FAMILIES",
    "Site",
    "family_for",
    "is_site_name",
    "kind_of",
    "of_kind",
    "resolve_sites",
    "site_index",
    "site_kinds",
]

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


def _by_forward_order(op, as_strings):
    """A comparison of two sites by (layer, kind rank); with anything else, as strings."""

    def compare(self, other):
        if isinstance(other, Site):
            return op(self._order(), other._order())
        return as_strings(self, other)

    return compare


class Site(str):
    """One activation site: the canonical name ``blocks.{layer}.hook_{kind}`` as a string
    that knows its :attr:`layer` and :attr:`kind`.

    A site *is* its name (it compares, hashes and serializes as that string), so it goes
    into JSON, CSV and dictionary keys unchanged; sites sort in the order a forward pass
    computes them. ``Site(3, "resid_post")`` builds one; :meth:`parse` reads a name.
    """

    __slots__ = ()

    def __new__(cls, layer: int, kind: str) -> Site:
        if kind not in SITE_KINDS:
            raise SiteError(f"unknown site kind {kind!r}; expected one of {', '.join(SITE_KINDS)}")
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise SiteError(f"a site's layer is an int >= 0, got {layer!r}")
        return str.__new__(cls, f"blocks.{layer}.hook_{kind}")

    def __getnewargs__(self) -> tuple[int, str]:  # copy / pickle
        return self.layer, self.kind

    @property
    def layer(self) -> int:
        return int(self[7 : self.index(".", 7)])  # "blocks.{layer}.hook_{kind}"

    @property
    def kind(self) -> str:
        return self[self.index(".hook_") + 6 :]

    @property
    def kind_rank(self) -> int:
        """Position of :attr:`kind` in a block's forward order (:data:`SITE_KINDS`)."""
        return SITE_KINDS.index(self.kind)

    @property
    def name(self) -> str:
        return str(self)

    def _order(self) -> tuple[int, int]:
        return self.layer, self.kind_rank

    __lt__ = _by_forward_order(operator.lt, str.__lt__)
    __le__ = _by_forward_order(operator.le, str.__le__)
    __gt__ = _by_forward_order(operator.gt, str.__gt__)
    __ge__ = _by_forward_order(operator.ge, str.__ge__)
    __hash__ = str.__hash__

    @classmethod
    def make(cls, layer: int, kind: str, n_layers: int) -> Site:
        """Build a site, normalizing a negative ``layer`` and checking both parts."""
        if not -n_layers <= layer < n_layers:
            raise LayerOutOfRangeError(
                f"layer {layer} is out of range for a model with {n_layers} layers "
                f"(valid: {-n_layers}..{n_layers - 1})"
            )
        return cls(layer % n_layers, kind)

    @classmethod
    def parse(cls, name: str, n_layers: int | None = None) -> Site:
        """Parse ``blocks.{l}.hook_{kind}``. With ``n_layers`` a negative ``l`` counts from
        the end and the layer is range-checked; without it ``l`` must be >= 0."""
        if isinstance(name, Site) and n_layers is None:
            return name
        m = _SITE_RE.match(name) if isinstance(name, str) else None
        if m is None:
            raise SiteError(
                f"unknown site {name!r}; expected 'blocks.{{layer}}.hook_{{kind}}' or a short "
                f"kind ({', '.join(SITE_KINDS)}) with layers="
            )
        layer, kind = int(m.group(1)), m.group(2)
        if n_layers is not None:
            return cls.make(layer, kind, n_layers)
        if layer < 0:
            raise SiteError(f"site {name!r}: a negative layer needs the model (resolve_sites)")
        return cls(layer, kind)

    @classmethod
    def optional(cls, name: str | None) -> Site | None:
        """:meth:`parse` a stored name, passing ``None`` through (a value with no site)."""
        return None if name is None else cls.parse(name)


def is_site_name(text: str) -> bool:
    """Whether ``text`` is meant as a full site name (``blocks.{l}.hook_{kind}``) rather
    than a short kind; :meth:`Site.parse` then checks it."""
    return text.startswith("blocks.")


def kind_of(site: str) -> str:
    """The kind of a full site name; a short kind (``"resid_post"``, ``"hook_mlp_out"``) as is."""
    return Site.parse(site).kind if is_site_name(site) else site.removeprefix("hook_")


def site_index(sites: Sequence[str], key: str | int) -> int:
    """Index in ``sites`` (full names) of a full name, a short kind (``"resid_post"``) or a
    layer (when one kind was captured at it)."""
    parsed = [Site.parse(s) for s in sites]
    if isinstance(key, int) and not isinstance(key, bool):
        matches = [i for i, s in enumerate(parsed) if s.layer == key]
        if len(matches) != 1:
            raise SiteError(
                f"layer {key} matches {len(matches)} captured sites; name the site instead "
                f"(captured: {', '.join(sites)})"
            )
        return matches[0]
    if key in parsed:
        return parsed.index(key)
    short = [i for i, s in enumerate(parsed) if s.kind == str(key).removeprefix("hook_")]
    if len(short) == 1:
        return short[0]
    raise SiteError(f"site {key!r} was not captured (captured: {', '.join(sites)})")


def site_kinds(sites: Sequence[str]) -> list[str]:
    """The distinct kinds of ``sites`` (full names), in order of first appearance."""
    return list(dict.fromkeys(Site.parse(s).kind for s in sites))


def of_kind(sites: Sequence[str], kind: str) -> tuple[list[int], list[int]]:
    """``(rows, layers)``: where in ``sites`` (full names) the sites of ``kind`` are, and
    their layers; a :class:`SiteError` naming the kinds present if there is none."""
    parsed = [Site.parse(s) for s in sites]
    rows = [i for i, s in enumerate(parsed) if s.kind == kind]
    if not rows:
        raise SiteError(f"no {kind!r} sites (kinds: {site_kinds(sites)}; sites: {list(sites)})")
    return rows, [parsed[i].layer for i in rows]


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
        elif is_site_name(item):
            out.add(Site.parse(item, n_layers))
        else:
            kind = item.removeprefix("hook_")
            out.update(Site.make(layer, kind, n_layers) for layer in layer_list)
    return sorted(out)
