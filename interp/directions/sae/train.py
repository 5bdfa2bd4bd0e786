"""Train a small SAE on captured activations, and measure any SAE on activations.

This is a compact trainer (Adam, unit-norm decoder rows with the parallel gradient
component removed, ``b_dec`` started at the data mean), not sae-lens: sae-lens trains
from a TransformerLens model and its own activation store, while interp already holds
the activations as a tensor. Each architecture owns its loss
(:meth:`~interp.directions.sae.base.SAE.training_loss`, in its own module) and any state it sets
from the last half of training (:meth:`~interp.directions.sae.base.SAE.training_statistic`, e.g. the
BatchTopK inference threshold); the trainer knows no architecture by name.

:func:`evaluate_sae` reports reconstruction MSE, explained variance, L0 and the number
of dead latents (never active on the evaluation rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.config import Config
from interp.directions.sae.base import SAE
from interp.errors import InterpError

__all__ = ["SAETrainConfig", "train_sae", "evaluate_sae"]


@dataclass(frozen=True)
class SAETrainConfig(Config):
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    l1_coefficient: float = 1e-3  # the ReLU architecture's L1 weight
    seed: int = 0
    log_every: int = 100


@torch.no_grad()
def evaluate_sae(sae: SAE, x: Tensor, *, batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction metrics of ``sae`` on ``x`` ``[n, d_in]``.

    ``mse``: mean squared error per element; ``explained_variance``: ``1 - SSE / SST``
    (SST around the mean of ``x``); ``l0``: mean active latents per row; ``dead``:
    latents never active on ``x``; ``dead_fraction`` = ``dead / d_sae``.
    """
    x = x.to(device=sae.W_enc.device, dtype=sae.W_enc.dtype)
    sse, l0, n = 0.0, 0.0, x.shape[0]
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for i in range(0, n, batch_size):
        xb = x[i : i + batch_size]
        f = sae.encode(xb)
        sse += float(((sae.decode(f) - xb) ** 2).sum())
        active = f != 0
        l0 += float(active.sum())
        fired |= active.any(0).cpu()
    sst = float(((x - x.mean(0)) ** 2).sum())
    dead = int((~fired).sum())
    return {
        "mse": sse / x.numel(),
        "explained_variance": 1.0 - sse / max(sst, 1e-30),
        "l0": l0 / n,
        "dead": dead,
        "dead_fraction": dead / sae.d_sae,
    }


def train_sae(
    sae: SAE,
    x,
    config: SAETrainConfig | None = None,
    *,
    site: str | int | None = None,
    progress: bool = True,
) -> tuple[SAE, dict]:
    """Train ``sae`` in place on rows ``x`` ``[n, d_in]``; returns it and a report.

    ``x`` may be :class:`~interp.record.activations.Activations`; then ``site`` (default: the
    SAE's own site, or the only captured one) picks the column. The report holds the
    config, the metrics of :func:`evaluate_sae` before and after training (on ``x``)
    and the loss history every ``log_every`` steps.
    """
    cfg = config or SAETrainConfig()
    if not isinstance(x, Tensor):
        key = site if site is not None else sae.cfg.site
        if key is None and len(x.sites) == 1:
            key = x.sites[0]
        if key is None:
            raise InterpError("these activations hold several sites; pass site=")
        x = x.site(key)
    if x.ndim != 2 or x.shape[1] != sae.d_in:
        raise InterpError(f"expected x [n, {sae.d_in}]; got {tuple(x.shape)}")
    x = x.to(device=sae.W_enc.device, dtype=sae.W_enc.dtype)
    g = torch.Generator().manual_seed(cfg.seed)
    before = evaluate_sae(sae, x)
    with torch.no_grad():
        sae.b_dec.data = x.mean(0).clone()
        sae.W_dec.data /= sae.W_dec.norm(dim=1, keepdim=True)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    history: list[dict] = []
    statistics: list[float] = []
    sae.train()
    _loop(sae, x, cfg, opt, g, history, statistics, progress)
    sae.eval()
    with torch.no_grad():
        sae.finish_training(statistics)
    after = evaluate_sae(sae, x)
    report = {
        "architecture": sae.architecture,
        "config": cfg.to_dict(),
        "sae_config": sae.cfg.to_dict(),
        "before": before,
        **after,
        "history": history,
    }
    return sae, report


def _loop(sae, x, cfg, opt, g, history, statistics, progress) -> None:
    for step in tqdm(range(cfg.steps), desc="train sae", disable=not progress):
        idx = torch.randint(0, x.shape[0], (cfg.batch_size,), generator=g).to(x.device)
        loss, f = sae.training_loss(x[idx], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            # keep decoder rows unit-norm: drop the gradient component along each row
            w, gw = sae.W_dec, sae.W_dec.grad
            if gw is not None:
                unit = w / w.norm(dim=1, keepdim=True)
                gw -= (gw * unit).sum(1, keepdim=True) * unit
        opt.step()
        with torch.no_grad():
            sae.W_dec.data /= sae.W_dec.norm(dim=1, keepdim=True)
        if step >= cfg.steps // 2:
            value = sae.training_statistic(f)
            if value is not None:
                statistics.append(value)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": float(loss.detach())})
