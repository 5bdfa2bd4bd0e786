import json

import pytest
import torch

from interp.directions import Direction, Subspace, cosine, load_directions, save_directions
from interp.errors import InterpError


def _vec(seed: int, d: int = 16) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def test_direction_is_unit_and_keeps_scale_and_layer_from_site():
    v = _vec(0) * 3
    d = Direction(v, site="blocks.3.hook_resid_post", name="era", provenance={"method": "test"})
    assert torch.allclose(d.vector.norm(), torch.tensor(1.0))
    assert d.scale == pytest.approx(float(v.norm()), rel=1e-6)
    assert torch.allclose(d.raw, v, atol=1e-6)
    assert d.layer == 3 and d.site == "blocks.3.hook_resid_post"
    with pytest.raises(InterpError):
        Direction(v, layer=2, site="blocks.3.hook_resid_post")
    with pytest.raises(InterpError):
        Direction(torch.zeros(4))
    with pytest.raises(InterpError):
        Direction(torch.ones(2, 3))
    with pytest.raises(AttributeError):
        d.name = "other"


def test_arithmetic_acts_on_raw_vectors():
    a, b = Direction(_vec(1), layer=2), Direction(_vec(2) * 5, layer=2)
    s = a + b
    assert torch.allclose(s.raw, a.raw + b.raw, atol=1e-5)
    assert torch.allclose((a - b).raw, a.raw - b.raw, atol=1e-5)
    assert s.layer == 2 and s.provenance["op"] == "+"
    assert torch.allclose((-a).vector, -a.vector)
    assert torch.allclose((2 * a).raw, 2 * a.raw, atol=1e-6)
    assert torch.allclose((a * -0.5).raw, -0.5 * a.raw, atol=1e-6)
    assert torch.allclose((a / 4).raw, a.raw / 4, atol=1e-6)
    with pytest.raises(InterpError):
        a + Direction(_vec(3), layer=5)


def test_cosine_project_remove():
    a = Direction(torch.tensor([1.0, 0.0, 0.0]))
    b = Direction(torch.tensor([1.0, 1.0, 0.0]))
    assert a.cosine(b) == pytest.approx(2**-0.5)
    assert cosine(a, torch.tensor([0.0, 0.0, 2.0])) == pytest.approx(0.0)
    x = torch.tensor([[3.0, 4.0, 5.0]])
    assert torch.allclose(a.project(x), torch.tensor([3.0]))
    assert torch.allclose(a.remove(x), torch.tensor([[0.0, 4.0, 5.0]]))


def test_to_returns_a_copy():
    a = Direction(_vec(4), layer=1, name="x")
    h = a.to(torch.float64)
    assert h.vector.dtype == torch.float64 and a.vector.dtype == torch.float32
    assert h is not a and h.name == "x" and h.scale == a.scale
    assert h.vector.data_ptr() != a.vector.data_ptr()


def test_save_load_roundtrip(tmp_path):
    a = Direction(_vec(5) * 2, site="blocks.1.hook_mlp_out", name="a", provenance={"n": 3})
    b = Direction(_vec(6), layer=4, name="b")
    st = a.save(tmp_path / "one")
    assert st.suffix == ".safetensors" and (tmp_path / "one.json").is_file()
    a2 = Direction.load(tmp_path / "one.safetensors")
    assert torch.equal(a2.vector, a.vector)
    assert (a2.layer, a2.site, a2.name, a2.provenance, a2.scale) == (
        a.layer,
        a.site,
        a.name,
        a.provenance,
        a.scale,
    )
    save_directions([a, b], tmp_path / "many")
    got = load_directions(tmp_path / "many")
    assert [g.name for g in got] == ["a", "b"] and got[1].layer == 4
    assert json.loads((tmp_path / "many.json").read_text())["kind"] == "directions"
    with pytest.raises(InterpError):
        Direction.load(tmp_path / "many")


def test_subspace_projector_is_order_and_scale_independent():
    dirs = [Direction(_vec(i, 32), layer=3) for i in range(4)]
    s1 = Subspace.from_directions(dirs)
    s2 = Subspace.from_tensor(torch.stack([d.vector * (i + 1) for i, d in enumerate(dirs[::-1])]))
    assert s1.k == 4 and s1.layer == 3
    gram = s1.basis @ s1.basis.T
    assert torch.allclose(gram, torch.eye(4), atol=1e-5)
    assert torch.allclose(s1.projector(), s2.projector(), atol=1e-5)
    x = torch.randn(10, 32)
    removed = s1.remove(x)
    for d in dirs:
        assert d.project(removed).abs().max() < 1e-4
    # removing jointly equals projecting out every input direction, in either order
    assert torch.allclose(s2.remove(x), removed, atol=1e-5)


def test_subspace_drops_dependent_vectors_and_roundtrips(tmp_path):
    a, b = _vec(10, 8), _vec(11, 8)
    s = Subspace.from_tensor(torch.stack([a, b, a + 2 * b]), site="blocks.0.hook_resid_pre")
    assert s.k == 2 and s.layer == 0
    with pytest.raises(InterpError):
        Subspace(torch.stack([a, b]))  # not orthonormal
    with pytest.raises(InterpError):
        Subspace.from_directions([Direction(a, layer=1), Direction(b, layer=2)])
    s.save(tmp_path / "sub")
    s2 = Subspace.load(tmp_path / "sub")
    assert torch.equal(s2.basis, s.basis) and s2.site == s.site
    assert len(s.directions()) == 2


# ---- difference of means ---------------------------------------------------------------
def _year_acts(seed: int = 0, d: int = 24):
    """Same questions and dates in 2024 and 2028; 2028 adds a planted offset."""
    import pandas as pd

    from interp.record.activations import Activations

    g = torch.Generator().manual_seed(seed)
    offset = torch.randn(d, generator=g)
    q_vecs = 4 * torch.randn(30, d, generator=g)  # big per-question variation
    rows, xs = [], []
    for year in (2024, 2028):
        for q in range(30):
            for date in ("05-12", "11-03"):
                rows.append({"year": year, "question_id": q, "date": date})
                x = q_vecs[q] + 0.1 * torch.randn(d, generator=g)
                xs.append(x + (offset if year == 2028 else 0))
    meta = pd.DataFrame(rows)
    meta.insert(0, "prompt", range(len(meta)))
    meta.insert(1, "position", 7)
    acts = Activations(torch.stack(xs)[:, None], ["blocks.2.hook_resid_post"], meta, "m", "abc")
    return acts, offset


def test_paired_diff_of_means_recovers_offset():
    from interp.directions.diffmeans import diff_of_means, pair_keys

    acts, offset = _year_acts()
    a, b = acts.where(year=2028), acts.where(year=2024)
    assert pair_keys(a.meta, b.meta) == ["question_id", "date"]
    d = diff_of_means(a, b, paired=True)
    assert d.cosine(offset) > 0.999
    assert d.scale == pytest.approx(float(offset.norm()), rel=0.02)
    assert d.site == "blocks.2.hook_resid_post" and d.layer == 2
    assert d.provenance["n_pairs"] == 60 and d.provenance["adapter_hash"] == "abc"
    # unbalanced sides: dropping half the 2024 questions breaks the unpaired estimate,
    # the paired one only loses the unmatched pairs
    b_half = b.where(question_id=list(range(15)))
    assert diff_of_means(a, b_half, paired=True).cosine(offset) > 0.999
    assert diff_of_means(a, b_half).cosine(offset) < 0.9


def test_paired_tensors_and_errors():
    from interp.directions.diffmeans import diff_of_means

    g = torch.Generator().manual_seed(1)
    base = torch.randn(50, 8, generator=g)
    shift = torch.randn(8, generator=g)
    d = diff_of_means(base + shift, base, paired=True)
    assert d.cosine(shift) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InterpError):
        diff_of_means(base[:10], base, paired=True)
    with pytest.raises(InterpError):
        diff_of_means(base, base)


def test_paired_pca_is_sign_aligned_with_the_mean():
    from interp.directions.diffmeans import paired_pca

    g = torch.Generator().manual_seed(2)
    offset = torch.randn(16, generator=g)
    base = 3 * torch.randn(40, 16, generator=g)
    strength = 0.5 + torch.rand(40, 1, generator=g)  # the pairs differ in how strongly
    a = base + strength * offset + 0.05 * torch.randn(40, 16, generator=g)
    pc = paired_pca(a, base)
    assert pc.cosine(offset) > 0.99
    flipped = paired_pca(base, a)
    assert flipped.cosine(offset) < -0.99
    assert 0.9 < pc.provenance["explained"] <= 1.0


def test_copy_and_deepcopy_keep_values():
    import copy

    a = Direction(_vec(20), layer=2, name="c", provenance={"x": [1]})
    for b in (copy.copy(a), copy.deepcopy(a)):
        assert torch.equal(b.vector, a.vector) and b.name == "c" and b.provenance == {"x": [1]}
    s = Subspace.from_directions([a, Direction(_vec(21), layer=2)])
    assert torch.equal(copy.deepcopy(s).basis, s.basis)
