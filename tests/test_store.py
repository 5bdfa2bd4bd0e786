"""The on-disk activation store: streaming, resume after kill -9, checksums, mismatches."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import interp
from interp.errors import StoreCorruptedError, StoreMismatchError

N_PROMPTS = 10


def _prompts():
    return interp.PromptSet.grid(
        "Today is {year}-05-12. {q}", year=range(1980, 1985), q=["Name a bird.", "What is new?"]
    )


def _capture(model, path, prompts=None, **kw):
    prompts = _prompts() if prompts is None else prompts
    return interp.capture(
        model, prompts, layers=[0, 2], batch_size=2, to=path, progress=False, **kw
    )


def test_killed_then_resumed_equals_uninterrupted(tiny_dirs, tmp_path):
    model_dir = tiny_dirs("llama")
    store_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal
        import interp, interp.record.writers as store
        from tests.test_store import _capture
        real_save, written = store.save_file, []
        def save_then_die(tensors, path):
            real_save(tensors, path)
            written.append(path)
            if len(written) == 3:  # the 3rd shard is on disk but not in the manifest yet
                os.kill(os.getpid(), signal.SIGKILL)
        store.save_file = save_then_die
        _capture(interp.load_model({str(model_dir)!r}, device="cpu"), {str(store_dir)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(Path(__file__).parents[1]))
    assert proc.returncode == -9
    manifest = json.loads((store_dir / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2 and not manifest["complete"]

    model = interp.load_model(model_dir, device="cpu")
    resumed = _capture(model, store_dir)
    assert resumed.complete
    uninterrupted = _capture(model, tmp_path / "clean")
    a, b = resumed.load(), uninterrupted.load()
    assert torch.equal(a.tensor, b.tensor) and a.meta.equals(b.meta)
    in_memory = interp.capture(model, _prompts(), layers=[0, 2], batch_size=2, progress=False)
    assert torch.equal(a.tensor, in_memory.tensor)
    assert a.meta.equals(in_memory.meta)


def test_store_streams_one_shard_per_batch(tiny_llama, tmp_path):
    store = _capture(tiny_llama, tmp_path / "s")
    assert len(store.manifest["shards"]) == N_PROMPTS // 2
    assert [len(meta) for _, meta in store.iter_shards()] == [2] * (N_PROMPTS // 2)
    assert store.manifest["request"]["model"] == tiny_llama.name


def test_corrupted_shard_is_detected(tiny_llama, tmp_path):
    store = _capture(tiny_llama, tmp_path / "s")
    shard = tmp_path / "s" / store.manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match="checksum"):
        store.load()
    with pytest.raises(StoreCorruptedError):
        _capture(tiny_llama, tmp_path / "s")


def test_manifest_mismatch_is_an_error(tiny_llama, tmp_path):
    _capture(tiny_llama, tmp_path / "s")
    with pytest.raises(StoreMismatchError, match="sites"):
        interp.capture(
            tiny_llama, _prompts(), layers=[1], batch_size=2, to=tmp_path / "s", progress=False
        )
    with pytest.raises(StoreMismatchError, match="prompts_sha256"):
        interp.capture(
            tiny_llama,
            _prompts().subset(range(4)),
            layers=[0, 2],
            batch_size=2,
            to=tmp_path / "s",
            progress=False,
        )
    with pytest.raises(StoreMismatchError, match="not an activation store"):
        interp.ActivationStore(tmp_path / "nothing").load()


def _interrupted(model, path, monkeypatch, n_shards=2, **kw):
    """A capture into ``path`` stopped after ``n_shards`` shards (as by a crash)."""
    import interp.record.writers as store

    real, written = store.save_file, []

    def save_then_fail(tensors, file):
        if len(written) == n_shards:
            raise KeyboardInterrupt
        real(tensors, file)
        written.append(file)

    monkeypatch.setattr(store, "save_file", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        _capture(model, path, **kw)
    monkeypatch.setattr(store, "save_file", real)
    manifest = json.loads((path / "manifest.json").read_text())
    assert len(manifest["shards"]) == n_shards and not manifest["complete"]
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_resume_after_the_weights_changed_is_refused(tmp_path, monkeypatch):
    from interp.testing import save_tiny_model

    model_dir = save_tiny_model("llama", tmp_path / "model", seed=0)
    store_dir = tmp_path / "s"
    before = _interrupted(interp.load_model(model_dir, device="cpu"), store_dir, monkeypatch)
    save_tiny_model("llama", model_dir, seed=1)  # other weights at the same path
    new = interp.load_model(model_dir, device="cpu")
    with pytest.raises(StoreMismatchError, match=r"weights_sha256 \(the model's weights: "):
        _capture(new, store_dir)
    assert {p.name: p.read_bytes() for p in store_dir.iterdir()} == before  # nothing mixed in
    # the same weights written again (new mtime, same bytes) resume
    save_tiny_model("llama", model_dir, seed=0)
    again = interp.load_model(model_dir, device="cpu")
    resumed = _capture(again, store_dir).load()
    fresh = interp.capture(again, _prompts(), layers=[0, 2], batch_size=2, progress=False)
    assert torch.equal(resumed.tensor, fresh.tensor)


def test_files_changed_after_loading_are_an_error(tmp_path):
    from interp.testing import save_tiny_model

    model_dir = save_tiny_model("llama", tmp_path / "model", seed=0)
    model = interp.load_model(model_dir, device="cpu")
    save_tiny_model("llama", model_dir, seed=1)
    with pytest.raises(interp.InterpError, match="changed on disk after the model was loaded"):
        _capture(model, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_in_memory_weights_changed_are_another_model(tmp_path, monkeypatch):
    from interp.testing import tiny_model

    model = tiny_model("llama", seed=3)
    _interrupted(model, tmp_path / "s", monkeypatch)
    first = model.weights_sha256
    with torch.no_grad():
        model.hf.model.norm.weight.mul_(2.0)  # in place: the tensor's version moves
    assert model.weights_sha256 != first
    with pytest.raises(StoreMismatchError, match="weights_sha256"):
        _capture(model, tmp_path / "s")


def _tagged(text: str):
    return _prompts().tag("t", text)


def test_other_tag_text_under_the_same_name_is_never_stale(tiny_llama, tmp_path, monkeypatch):
    store_dir = tmp_path / "s"
    complete = interp.capture(
        tiny_llama, _tagged("Today"), positions="t", layers=[0], batch_size=2, to=store_dir,
        progress=False,
    )  # fmt: skip
    assert complete.complete
    with pytest.raises(StoreMismatchError, match=r"positions_sha256 \(the resolved token"):
        interp.capture(
            tiny_llama, _tagged("05-12"), positions="t", layers=[0], batch_size=2, to=store_dir,
            progress=False,
        )  # fmt: skip
    # an interrupted one too
    part = tmp_path / "p"
    _interrupted(tiny_llama, part, monkeypatch, positions="t", prompts=_tagged("Today"))
    with pytest.raises(StoreMismatchError, match="positions_sha256"):
        _capture(tiny_llama, part, positions="t", prompts=_tagged("05-12"))


def test_weights_hash_is_read_once_and_follows_the_files(tmp_path, monkeypatch):
    import interp.fingerprint as fp
    from interp.testing import save_tiny_model

    model_dir = save_tiny_model("llama", tmp_path / "model", seed=0)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_DISK_CACHE_MIN", 0)  # every file keeps its hash on disk
    monkeypatch.setattr(fp, "_FILE_CACHE", {})
    reads = []
    real = fp.sha256_file
    monkeypatch.setattr(fp, "sha256_file", lambda p: reads.append(p) or real(p))
    first = fp.model_dir_sha256(model_dir)
    n_files = len(fp.model_files(model_dir))
    assert len(reads) == n_files >= 3  # weights, config, tokenizer files
    assert fp.model_dir_sha256(model_dir) == first and len(reads) == n_files  # in process
    monkeypatch.setattr(fp, "_FILE_CACHE", {})  # a new process: the disk cache answers
    assert fp.model_dir_sha256(model_dir) == first and len(reads) == n_files
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes, new mtime: read again, same hash
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # whatever the clock's grain
    assert fp.model_dir_sha256(model_dir) == first and len(reads) == n_files + 1
    save_tiny_model("llama", model_dir, seed=1)
    assert fp.model_dir_sha256(model_dir) != first
