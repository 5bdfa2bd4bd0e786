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


def test_a_site_is_its_name_and_sorts_in_forward_order():
    import copy
    import json
    import pickle

    site = Site(2, "mlp_out")
    assert site == "blocks.2.hook_mlp_out" and {site: 1}["blocks.2.hook_mlp_out"] == 1
    assert json.dumps([site]) == '["blocks.2.hook_mlp_out"]'
    for clone in (copy.deepcopy(site), pickle.loads(pickle.dumps(site))):
        assert type(clone) is Site and (clone.layer, clone.kind) == (2, "mlp_out")
    names = ["blocks.10.hook_resid_pre", "blocks.2.hook_resid_post", "blocks.2.hook_attn_out"]
    assert sorted(Site.parse(n) for n in names) == [names[2], names[1], names[0]]
    with pytest.raises(AttributeError):
        site.layer = 3


def test_parse_without_the_model_needs_a_canonical_layer():
    assert Site.parse("blocks.3.hook_resid_pre").layer == 3
    with pytest.raises(SiteError, match="negative layer"):
        Site.parse("blocks.-1.hook_resid_pre")
    assert Site.parse("blocks.-1.hook_resid_pre", 4).layer == 3
    with pytest.raises(SiteError, match="unknown site kind"):
        Site(1, "hook_q")


def test_site_helpers_select_by_name_kind_and_layer():
    from interp.sites import kind_of, of_kind, site_index, site_kinds

    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    assert site_index(sites, "blocks.1.hook_mlp_out") == 1 and site_index(sites, "mlp_out") == 1
    assert site_index(sites, 0) == 0
    with pytest.raises(SiteError, match="layer 1 matches 2"):
        site_index(sites, 1)
    with pytest.raises(SiteError, match="was not captured"):
        site_index(sites, "resid_post")  # two of that kind
    assert site_kinds(sites) == ["resid_post", "mlp_out"]
    assert of_kind(sites, "resid_post") == ([0, 2], [0, 1])
    with pytest.raises(SiteError, match="no 'attn_out' sites"):
        of_kind(sites, "attn_out")
    assert kind_of("blocks.4.hook_attn_out") == "attn_out" and kind_of("hook_mlp_out") == "mlp_out"


def test_value_objects_carry_parsed_sites(tmp_path):
    import pandas as pd
    import torch

    from interp.causal.patch_result import PatchResult
    from interp.directions import Direction, Subspace
    from interp.record.activations import Activations

    d = Direction(torch.ones(4), site="blocks.3.hook_attn_out")
    s = Subspace.from_tensor(torch.eye(4)[:2], site="blocks.1.hook_resid_pre")
    acts = Activations(torch.zeros(2, 1, 4), ["blocks.2.hook_mlp_out"], pd.DataFrame({"a": [0, 1]}))
    res = PatchResult(torch.zeros(1, 1), ["blocks.0.hook_resid_pre"], [0], ["0:a"], 1.0, 0.0, "x")
    for site, layer, kind in [
        (d.site, 3, "attn_out"),
        (s.site, 1, "resid_pre"),
        (acts.sites[0], 2, "mlp_out"),
        (res.sites[0], 0, "resid_pre"),
    ]:
        assert isinstance(site, Site) and (site.layer, site.kind) == (layer, kind)
    assert d.layer == 3 and acts.layers == [2] and acts.kinds == ["mlp_out"]
    d.save(tmp_path / "d")
    assert isinstance(Direction.load(tmp_path / "d").site, Site)
    with pytest.raises(SiteError, match="canonical"):
        Direction(torch.ones(4), site="layers.3")
    with pytest.raises(SiteError):
        Activations(torch.zeros(1, 1, 4), ["resid_post"], pd.DataFrame({"a": [0]}))
