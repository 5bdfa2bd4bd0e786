"""Shared fixtures: tiny random-weight models built offline, once per test session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one thread: the tests run tiny models, where a second thread only spin-waits
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """family -> directory of a saved random-weight model with its tokenizer (lazy)."""
    from interp.testing import save_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    made: dict[str, object] = {}

    def get(family: str):
        if family not in made:
            made[family] = save_tiny_model(family, root / family)
        return made[family]

    return get


@pytest.fixture(scope="session")
def tiny_llama():
    from interp.testing import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="session")
def small_organism():
    """Directory of the small test organism: pretrained once, then cached under $INTERP_CACHE."""
    from interp.organism import OrganismConfig, build_organism

    return build_organism(OrganismConfig.small(), progress=False)
