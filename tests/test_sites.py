import pytest

from interp.errors import LayerOutOfRangeError, SiteError, UnsupportedArchitectureError
from interp.sites import FAMILIES, Site, family_for, resolve_sites


def test_short_kind_with_layers_and_negative_indices():
    sites = resolve_sites("resid_post", 8, layers=[0, -1])
    assert [s.name for s in sites] == ["blocks.0.hook_resid_post", "blocks.7.hook_resid_post"]


def test_full_names_normalize_and_sort_in_forward_order():
    sites = resolve_sites(
        ["blocks.-1.hook_mlp_out", "blocks.2.hook_resid_pre", "hook_attn_out"], 4, layers=2
    )
    assert [s.name for s in sites] == [
        "blocks.2.hook_resid_pre",
        "blocks.2.hook_attn_out",
        "blocks.3.hook_mlp_out",
    ]


def test_short_kind_without_layers_means_every_layer():
    assert len(resolve_sites("resid_pre", 6)) == 6


@pytest.mark.parametrize("layer", [8, -9])
def test_layer_out_of_range(layer):
    with pytest.raises(LayerOutOfRangeError, match="out of range"):
        resolve_sites("resid_post", 8, layers=layer)


@pytest.mark.parametrize("name", ["blocks.1.hook_q", "resid", "layers.1.output"])
def test_unknown_site(name):
    with pytest.raises(SiteError, match="unknown site"):
        resolve_sites(name, 4, layers=1)


def test_unknown_family():
    with pytest.raises(UnsupportedArchitectureError, match="FAMILIES"):
        family_for("mamba")


def test_every_family_row_is_complete():
    for row in FAMILIES.values():
        assert row.layers and row.attn and row.mlp and row.final_norm and row.embed


def test_site_parse_roundtrip():
    site = Site.parse("blocks.3.hook_attn_out", 4)
    assert (site.layer, site.kind, str(site)) == (3, "attn_out", "blocks.3.hook_attn_out")
