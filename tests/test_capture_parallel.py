"""Data-parallel capture: several processes (parts) write one store, equal to one process."""

import json
from pathlib import Path

import pytest
import torch

import interp
from interp.errors import InterpError, StoreMismatchError


def _prompts():
    # 7 prompts of different lengths: 4 batches of 2, the last one short
    qs = ["Name a bird.", "What is new in the world these days?", "Hi.", "Why?"]
    return interp.PromptSet.grid("Today is {year}. {q}", year=[1984, 2001], q=qs).subset(range(7))


def _capture(model, path, **kw):
    return interp.capture(
        model, _prompts(), layers=[0, 2], positions="all", batch_size=2, to=path,
        progress=False, **kw,
    )  # fmt: skip


def _files(path: Path) -> dict[str, bytes]:
    """The store as a reader sees it: the manifest and every shard, byte for byte."""
    return {f.name: f.read_bytes() for f in sorted(path.glob("*.safetensors"))} | {
        "manifest.json": (path / "manifest.json").read_bytes()
    }


def test_parts_write_the_store_one_process_writes(tiny_llama, tmp_path):
    one = _capture(tiny_llama, tmp_path / "one")
    first = _capture(tiny_llama, tmp_path / "parts", part=(0, 2))
    assert not first.complete  # the other part has not written its batches yet
    with pytest.raises(StoreMismatchError, match="parts have not all finished"):
        first.load()
    second = _capture(tiny_llama, tmp_path / "parts", part=(1, 2))
    assert second.complete
    assert _files(tmp_path / "parts") == _files(tmp_path / "one")
    assert torch.equal(second.load().tensor, one.load().tensor)


def test_parts_of_another_split_resume_each_other(tiny_llama, tmp_path):
    """A part counts every batch already written, whatever split wrote it."""
    one = _capture(tiny_llama, tmp_path / "one")
    path = tmp_path / "mixed"
    _capture(tiny_llama, path, part=(0, 3))  # batches 0, 3
    _capture(tiny_llama, path, part=(1, 2))  # batch 1 (3 is done)
    parts = sorted(f.name for f in (path / "parts").iterdir())
    assert parts == ["rank-0-of-3.json", "rank-1-of-2.json"]
    done = _capture(tiny_llama, path, part=(0, 2))  # batch 2 (0 is done), then the merge
    assert done.complete
    assert _files(path) == _files(tmp_path / "one")
    assert len(done) == len(one)


def test_a_part_of_another_request_is_refused(tiny_llama, tmp_path):
    path = tmp_path / "s"
    _capture(tiny_llama, path, part=(0, 2))
    with pytest.raises(StoreMismatchError, match="rank-0-of-2.json"):
        interp.capture(
            tiny_llama, _prompts(), layers=[1], positions="all", batch_size=2, to=path,
            part=(1, 2), progress=False,
        )  # fmt: skip


@pytest.mark.parametrize("part", [(2, 2), (-1, 2), (0, 0)])
def test_a_bad_part_is_a_clear_error(tiny_llama, tmp_path, part):
    with pytest.raises(InterpError, match="0 <= rank < world"):
        _capture(tiny_llama, tmp_path / "s", part=part)


def test_part_needs_a_store(tiny_llama):
    with pytest.raises(InterpError, match="pass to="):
        interp.capture(tiny_llama, ["a b"], part=(0, 2), progress=False)


def test_capture_parallel_processes_equal_one_process(tiny_dirs, tmp_path):
    model_dir = tiny_dirs("llama")
    model = interp.load_model(model_dir, device="cpu")
    one = _capture(model, tmp_path / "one").load()
    kw = {"layers": [0, 2], "positions": "all", "batch_size": 2}
    store = interp.capture_parallel(
        model_dir, _prompts(), devices=["cpu", "cpu"], to=tmp_path / "dp", threads=1,
        progress=False, **kw,
    )  # fmt: skip
    got = store.load()
    assert store.complete and got.sites == one.sites
    assert got.meta.equals(one.meta)
    torch.testing.assert_close(got.tensor, one.tensor, rtol=0, atol=1e-5)
    manifest = json.loads((tmp_path / "dp" / "manifest.json").read_text())
    assert (
        manifest["request"]
        == json.loads((tmp_path / "one" / "manifest.json").read_text())["request"]
    )


def test_a_failed_part_is_named_and_the_rerun_resumes(tiny_dirs, tmp_path):
    model_dir = tiny_dirs("llama")
    kw = {"layers": [0, 2], "positions": "all", "batch_size": 2, "threads": 1, "progress": False}
    path = tmp_path / "dp"
    with pytest.raises(InterpError, match="part 1 on no-such-device failed"):
        interp.capture_parallel(model_dir, _prompts(), devices=["cpu", "no-such-device"],
                                to=path, **kw)  # fmt: skip
    kept = json.loads((path / "parts" / "rank-0-of-2.json").read_text())["shards"]
    assert [s["batch"] for s in kept] == [0, 2]  # part 0 finished its batches
    store = interp.capture_parallel(model_dir, _prompts(), devices=["cpu", "cpu"], to=path, **kw)
    assert store.complete and len(store) == len(_capture(interp.load_model(model_dir),
                                                          tmp_path / "one"))  # fmt: skip


def test_capture_parallel_refuses_unknown_arguments(tiny_dirs, tmp_path):
    with pytest.raises(InterpError, match="unknown arguments"):
        interp.capture_parallel(tiny_dirs("llama"), ["a"], devices=["cpu"], to=tmp_path, size=3)
