"""The on-disk activation store: streaming, resume after kill -9, checksums, mismatches."""

import json
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


def _capture(model, path, **kw):
    return interp.capture(
        model, _prompts(), layers=[0, 2], batch_size=2, to=path, progress=False, **kw
    )


def test_killed_then_resumed_equals_uninterrupted(tiny_dirs, tmp_path):
    model_dir = tiny_dirs("llama")
    store_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal
        import interp, interp.store as store
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
