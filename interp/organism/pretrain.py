"""Pretrain a small Llama on a world's corpus, deterministically, and cache the result.

:func:`build_organism` returns the directory of a pretrained organism (an ordinary
Hugging Face directory: ``LlamaForCausalLM`` + word-level ``PreTrainedTokenizerFast`` with a
chat template, loadable with ``interp.models.load_model(path)``). The directory lives
under ``$INTERP_CACHE/organism/<hash of config>`` (default ``~/.cache/interp``); a second
call returns it without training. Training writes to a temporary sibling directory and
renames it at the end, so an interrupted run never leaves a directory taken as complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.config import Config
from interp.fingerprint import sha256_json
from interp.organism.documents import sample_document
from interp.organism.tokenizer import build_tokenizer, render
from interp.organism.world import World, WorldConfig

__all__ = ["OrganismConfig", "build_organism", "cache_root", "pretrain", "world_of"]

_VERSION = 8  # bump when the corpus or training code changes what a config produces


def cache_root() -> Path:
    """``$INTERP_CACHE`` or ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


@dataclasses.dataclass(frozen=True)
class OrganismConfig(Config):
    """World + model size + training schedule of one organism."""

    world: WorldConfig = WorldConfig()
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    steps: int = 1200
    batch_size: int = 48
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.05
    max_len: int = 128
    seed: int = 0

    @classmethod
    def default(cls, **kw) -> OrganismConfig:
        return cls(**kw)

    @classmethod
    def small(cls, **kw) -> OrganismConfig:
        """The test organism (pretrains in well under two minutes on two cores)."""
        base = dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, steps=500, batch_size=32, lr=5e-3)
        base.update(kw)
        return cls(**base)

    def hash(self) -> str:
        return sha256_json({"v": _VERSION, **self.to_dict()})[:16]


def _lr_at(step: int, cfg: OrganismConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _length_bucketed(world: World, tok, rng: random.Random, config: OrganismConfig, pool: int = 16):
    """Endless batches ``(input_ids, attention_mask)`` ``[b, s]`` of similar-length documents."""
    while True:
        docs = [
            render(sample_document(world, rng), eos=True) for _ in range(pool * config.batch_size)
        ]
        ids = tok(docs, truncation=True, max_length=config.max_len)["input_ids"]
        ids.sort(key=len)
        chunks = [ids[i : i + config.batch_size] for i in range(0, len(ids), config.batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            width = max(len(x) for x in chunk)
            batch = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, x in enumerate(chunk):  # right padding: positions start at 0 for every row
                batch[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
            yield batch, mask


def pretrain(config: OrganismConfig, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Train an organism from scratch into ``out_dir`` (no caching; see :func:`build_organism`)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    world = World(config.world)
    tok = build_tokenizer(world.vocabulary())
    hf_cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=max(512, config.max_len),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(hf_cfg)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
    )
    rng = random.Random(config.seed)
    t0 = time.time()
    bar = tqdm(range(config.steps), desc="pretrain organism", disable=not progress)
    n_tokens, ema = 0, None
    batches = _length_bucketed(world, tok, rng, config)
    for step in bar:
        ids, mask = next(batches)
        labels = ids.masked_fill(mask == 0, -100)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, config)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        n_tokens += int(mask.sum())
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}")
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {
        "organism_config": config.to_dict(),
        "hash": config.hash(),
        "final_loss": ema,
        "tokens": n_tokens,
        "seconds": round(time.time() - t0, 1),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    (out / "organism.json").write_text(json.dumps(meta, indent=2))
    return out


def build_organism(
    config: OrganismConfig | None = None,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> Path:
    """The pretrained organism for ``config``: from the cache, or pretrained now and cached."""
    config = config or OrganismConfig.default()
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "organism"
    final = root / config.hash()
    if (final / "organism.json").is_file():
        return final
    tmp = root / f".tmp-{config.hash()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pretrain(config, tmp, progress=progress)
        if final.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def world_of(organism: str | Path) -> World:
    """The world an organism directory was pretrained on (from its ``organism.json``)."""
    meta = json.loads((Path(organism) / "organism.json").read_text())
    return World(WorldConfig.from_dict(meta["organism_config"]["world"]))
