"""Streaming over an activation store: shards, one site, reducers and probes vs in memory."""

import json
import struct

import numpy as np
import pandas as pd
import pytest
import torch

import interp
import interp.record.store as store_mod
from interp.directions.diffmeans import diff_of_means, paired_pca
from interp.directions.probes import probe_layers
from interp.errors import StoreCorruptedError
from interp.record.reducers import mean_norms

QUESTIONS = [
    "Name a bird.",
    "What is new in the world of science today?",
    "Who rules?",
    "Tell me a long story about the sea and the ships on it.",
    "Why?",
    "Which year is it now, and what happened last year?",
]


def _prompts() -> interp.PromptSet:
    texts, rows = [], []
    for q, question in enumerate(QUESTIONS):
        for trigger in (True, False):
            texts.append(f"The year is {1984 if trigger else 2020} . {question}")
            rows.append({"question": q, "trigger": trigger, "era": "old" if trigger else "new"})
    return interp.PromptSet(texts, pd.DataFrame(rows))


@pytest.fixture(scope="module", params=["all", "last"])
def captured(request, tiny_llama, tmp_path_factory):
    """(store, the same rows loaded in memory, positions): batch_size 3 -> several shards."""
    path = tmp_path_factory.mktemp(f"store-{request.param}")
    store = interp.capture(
        tiny_llama,
        _prompts(),
        sites=["resid_pre", "resid_post"],
        positions=request.param,
        batch_size=3,
        to=path,
        progress=False,
    )
    return store, store.load(), request.param


def _copy(store, tmp_path):
    """A fresh copy of a store's directory (to damage without touching the fixture)."""
    import shutil

    shutil.copytree(store.path, tmp_path / "copy")
    return interp.ActivationStore(tmp_path / "copy")


def _acts_offset(path, row: int, site: int) -> int:
    """Byte offset in a shard file of ``acts[row, site, 0]`` (from the safetensors header)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    entry = json.loads(raw[8 : 8 + n])["acts"]
    _, n_sites, d = entry["shape"]
    return 8 + n + entry["data_offsets"][0] + ((row * n_sites + site) * d) * 4


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_iter_shards_site_and_meta_match_load(captured):
    store, acts, _ = captured
    assert len(store.manifest["shards"]) == 4 and len(store) == len(acts)
    picked = [acts.sites[3], acts.sites[0]]
    parts = list(store.iter_shards(sites=picked, columns=["prompt", "trigger"]))
    assert [len(meta) for _, meta in parts] == [s["rows"] for s in store.manifest["shards"]]
    tensor = torch.cat([t for t, _ in parts])
    assert torch.equal(tensor, acts.tensor[:, [3, 0]])
    assert pd.concat([m for _, m in parts], ignore_index=True).equals(
        acts.meta[["prompt", "trigger"]]
    )
    for key in (acts.sites[5], acts.sites[2]):
        assert torch.equal(store.site(key), acts.site(key))
    assert store.meta.equals(acts.meta)
    assert (store.model_name, store.sites) == (acts.model_name, acts.sites)


def test_streaming_diff_of_means_equals_in_memory(captured):
    store, acts, _ = captured
    site = "blocks.1.hook_resid_post"
    x = acts.site(site).double()
    trig = acts.meta.trigger.to_numpy().copy()
    naive = x[torch.from_numpy(trig)].mean(0) - x[torch.from_numpy(~trig)].mean(0)
    streamed = diff_of_means(store, by="trigger", site=site)
    in_memory = diff_of_means(acts.where(trigger=True), acts.where(trigger=False), site=site)
    same_path = diff_of_means(acts, by="trigger", site=site)
    for d in (streamed, in_memory, same_path):
        assert torch.allclose(d.raw.double(), naive, atol=1e-6, rtol=0)
        assert d.scale == pytest.approx(float(naive.norm()), rel=1e-6)
    assert streamed.provenance["n_a"] == int(trig.sum()) and streamed.site == site
    # queries, and a store against in-memory activations
    q = diff_of_means(store, by=("question < 3", "question >= 3"), site=site)
    ref = diff_of_means(acts.where(question=[0, 1, 2]), acts.where(question=[3, 4, 5]), site=site)
    assert torch.allclose(q.raw.double(), ref.raw.double(), atol=1e-6, rtol=0)
    mixed = diff_of_means(store, acts.where(trigger=False), site=site)
    full = x.mean(0) - x[torch.from_numpy(~trig)].mean(0)
    assert torch.allclose(mixed.raw.double(), full, atol=1e-6, rtol=0)


def test_streaming_paired_equals_in_memory_and_naive(captured):
    store, acts, _ = captured
    site = "blocks.2.hook_resid_pre"
    x, meta = acts.site(site).double(), acts.meta
    naive = torch.stack(
        [
            x[torch.tensor(((meta.question == q) & meta.trigger).to_numpy())].mean(0)
            - x[torch.tensor(((meta.question == q) & ~meta.trigger).to_numpy())].mean(0)
            for q in range(len(QUESTIONS))
        ]
    ).mean(0)
    streamed = diff_of_means(store, by="trigger", paired=True, site=site)
    in_memory = diff_of_means(
        acts.where(trigger=True), acts.where(trigger=False), paired=True, site=site
    )
    assert streamed.provenance["pair_on"] == ["question"]
    assert streamed.provenance["n_pairs"] == len(QUESTIONS)
    for d in (streamed, in_memory):
        assert torch.allclose(d.raw.double(), naive, atol=1e-6, rtol=0)
    pc_s = paired_pca(store, by="trigger", site=site)
    pc_m = paired_pca(acts.where(trigger=True), acts.where(trigger=False), site=site)
    assert torch.allclose(pc_s.vector, pc_m.vector, atol=1e-6, rtol=0)
    assert pc_s.provenance["explained"] == pytest.approx(pc_m.provenance["explained"], abs=1e-9)


def test_streaming_norms_equal_in_memory(captured, tiny_llama):
    store, acts, positions = captured
    naive = {
        layer: float(acts.site(f"blocks.{layer}.hook_resid_post").double().norm(dim=-1).mean())
        for layer in acts.layers
    }
    for got in (mean_norms(store, site="resid_post"), mean_norms(acts, site="resid_post")):
        assert got.keys() == naive.keys()
        assert np.allclose(list(got.values()), list(naive.values()), rtol=1e-9, atol=0)
    assert mean_norms(store, site="resid_pre", layers=[1]).keys() == {1}
    if positions == "all":  # every real token: the model-side reference
        ref = interp.residual_norm(tiny_llama, [p for p in _prompts().prompts], site="resid_post")
        got = mean_norms(store, site="resid_post")
        assert np.allclose(list(got.values()), [ref[k] for k in got], rtol=1e-5, atol=0)


def test_probe_sweep_from_store_equals_activations(captured, monkeypatch):
    store, acts, _ = captured
    reads = []
    real = store_mod._read_shard

    def spy(root, shard, sites, verify, index=True):
        reads.append(None if sites is None else len(sites))
        return real(root, shard, sites, verify, index)

    monkeypatch.setattr(store_mod, "_read_shard", spy)
    kw = {"cv": 3, "groups": "question", "site": "resid_post", "seed": 1}
    streamed = probe_layers(store, "trigger", **kw)
    assert set(reads) <= {0, 1}  # metadata, then one site at a time; never the whole shard
    in_memory = probe_layers(acts, "trigger", **kw)
    _assert_same_table(streamed, in_memory)
    # held-out questions, at one site (its bootstrap is the slow part)
    hold = {
        "train": acts.meta.question <= 3,
        "test": acts.meta.question > 3,
        "site": acts.sites[-1],
    }
    _assert_same_table(probe_layers(store, "era", **hold), probe_layers(acts, "era", **hold))


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a.drop(columns="direction"), b.drop(columns="direction"))
    for da, db in zip(a.direction, b.direction, strict=True):
        assert (da is None) == (db is None)
        if da is not None:
            assert torch.equal(da.vector, db.vector) and da.site == db.site


def test_site_reads_only_that_sites_bytes(captured, monkeypatch, tmp_path):
    store, acts, _ = captured
    d, n_sites = acts.d_model, len(acts.sites)
    got: list[tuple[str, tuple]] = []
    real_open = store_mod.safe_open

    class Spy:
        def __init__(self, *a, **k):
            self.f = real_open(*a, **k)

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, name):
            t = self.inner.get_tensor(name)
            got.append((name, tuple(t.shape)))
            return t

        def get_slice(self, name):
            sl = self.inner.get_slice(name)

            class Slice:
                def get_shape(self):
                    return sl.get_shape()

                def __getitem__(self, idx):
                    t = sl[idx]
                    got.append((f"{name}[]", tuple(t.shape)))
                    return t

            return Slice()

    monkeypatch.setattr(store_mod, "safe_open", Spy)
    x = store.site("blocks.2.hook_resid_post")
    acts_reads = [shape for name, shape in got if name.startswith("acts")]
    assert all(shape[1:] == (1, d) for shape in acts_reads), acts_reads
    assert sum(shape[0] for shape in acts_reads) == len(acts) and x.shape == (len(acts), d)
    assert n_sites == 8  # 4 layers x 2 kinds: a whole shard would be 8 times larger
    monkeypatch.undo()

    # damage another site's bytes: this site still reads clean, the other and load() do not
    copy = _copy(store, tmp_path)
    shard = copy.path / copy.manifest["shards"][1]["file"]
    _flip(shard, _acts_offset(shard, row=0, site=acts.site_index("blocks.0.hook_resid_pre")) + 1)
    assert torch.equal(copy.site("blocks.2.hook_resid_post"), x)
    with pytest.raises(StoreCorruptedError, match="checksum"):
        copy.site("blocks.0.hook_resid_pre")
    with pytest.raises(StoreCorruptedError):
        copy.load()


def test_corrupted_shard_still_raises(captured, tmp_path):
    store, acts, _ = captured
    copy = _copy(store, tmp_path)
    site = "blocks.1.hook_resid_post"
    shard = copy.path / copy.manifest["shards"][2]["file"]
    _flip(shard, _acts_offset(shard, row=0, site=acts.site_index(site)) + 2)
    with pytest.raises(StoreCorruptedError, match="checksum"):
        copy.site(site)
    with pytest.raises(StoreCorruptedError):
        list(copy.iter_shards(sites=[site]))
    with pytest.raises(StoreCorruptedError):
        diff_of_means(copy, by="trigger", site=site)
    with pytest.raises(StoreCorruptedError):
        mean_norms(copy, site="resid_post")
    with pytest.raises(StoreCorruptedError):
        probe_layers(copy, "trigger", cv=3, groups="question", site="resid_post")
    # a store written without part checksums falls back to the whole file's
    manifest = copy.manifest
    for s in manifest["shards"]:
        del s["parts"]
    copy.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreCorruptedError, match="checksum"):
        copy.site("blocks.0.hook_resid_pre")
    clean = _copy(store, tmp_path / "clean")
    clean_manifest = clean.manifest
    for s in clean_manifest["shards"]:
        del s["parts"]
    clean.manifest_path.write_text(json.dumps(clean_manifest))
    assert torch.equal(clean.site(site), acts.site(site))


def test_bf16_store_streams_like_in_memory(tiny_llama, tmp_path):
    kw = dict(sites="resid_post", positions="all", batch_size=4, dtype=torch.bfloat16)
    store = interp.capture(tiny_llama, _prompts(), to=tmp_path / "bf16", progress=False, **kw)
    acts = interp.capture(tiny_llama, _prompts(), progress=False, **kw)
    assert acts.tensor.dtype == torch.bfloat16 and len(store.manifest["shards"]) == 3
    site = acts.sites[2]
    assert torch.equal(store.site(site), acts.site(site))
    x, trig = acts.site(site).double(), torch.tensor(acts.meta.trigger.to_numpy())
    naive = x[trig].mean(0) - x[~trig].mean(0)
    streamed, in_memory = (diff_of_means(src, by="trigger", site=site) for src in (store, acts))
    assert torch.equal(streamed.vector, in_memory.vector)  # bf16 values sum exactly in float64
    # the Direction is kept in the activations' dtype (bf16: ~3 significant digits)
    assert streamed.vector.dtype == torch.bfloat16
    assert torch.allclose(streamed.raw.double(), naive, atol=1e-2 * float(naive.abs().max()))
    assert mean_norms(store) == pytest.approx(mean_norms(acts), rel=1e-12)
