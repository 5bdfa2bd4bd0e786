"""The SAE registry (each architecture registers itself) and each architecture's own
training loss, against the naive forward."""

from __future__ import annotations

import pytest
import torch

from interp.directions.sae import (
    ARCHITECTURES,
    BatchTopKSAE,
    JumpReLUSAE,
    ReluSAE,
    ReluSAEConfig,
    SAEConfig,
    SAETrainConfig,
    TopKSAEConfig,
    make_sae,
)
from interp.errors import InterpError

D_IN, D_SAE = 12, 20


def test_each_architecture_registers_itself_and_owns_its_loss():
    assert ARCHITECTURES["relu"] is ReluSAE and ARCHITECTURES["standard"] is ReluSAE
    assert ARCHITECTURES["batchtopk"] is BatchTopKSAE and ARCHITECTURES["jumprelu"] is JumpReLUSAE
    x = torch.randn(16, D_IN, generator=torch.Generator().manual_seed(0))
    cfg = SAETrainConfig(l1_coefficient=0.3)
    for arch, kw in [("standard", {}), ("topk", {"k": 3}), ("batchtopk", {"k": 3})]:
        sae = make_sae(arch, d_in=D_IN, d_sae=D_SAE, seed=1, **kw)
        with torch.no_grad():
            sae.b_enc.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
        loss, f = sae.training_loss(x, cfg)
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc  # the naive forward
        if arch == "standard":
            want_f = pre.relu()
        elif arch == "topk":
            keep = pre.topk(3, dim=-1).indices
            want_f = torch.zeros_like(pre).scatter(-1, keep, pre.gather(-1, keep).relu())
        else:  # the 3 * 16 largest relu'd values of the whole batch
            flat = pre.relu().flatten()
            cut = flat.sort(descending=True).values[3 * 16 - 1]
            want_f = pre.relu() * (pre.relu() >= cut)
        want = ((want_f @ sae.W_dec + sae.b_dec - x) ** 2).sum(-1).mean()
        if arch == "standard":
            want = want + 0.3 * (want_f * sae.W_dec.norm(dim=1)).sum(-1).mean()
        torch.testing.assert_close(f, want_f, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(InterpError, match="does not train jumprelu"):
        make_sae("jumprelu", d_in=D_IN, d_sae=D_SAE).training_loss(x, cfg)
    # the base config reads the architecture its dict names, strictly
    cfg_topk = SAEConfig.from_dict({"architecture": "topk", "d_in": 4, "d_sae": 8, "k": 2})
    assert isinstance(cfg_topk, TopKSAEConfig) and cfg_topk.k == 2
    with pytest.raises(InterpError, match="unknown SAE config keys: kk"):
        TopKSAEConfig.from_dict({"d_in": 4, "d_sae": 8, "kk": 2})
    with pytest.raises(InterpError, match="'d_in' must be an integer"):
        TopKSAEConfig.from_dict({"d_in": "4", "d_sae": 8})
    with pytest.raises(InterpError, match="'topk' SAE config given to ReluSAEConfig"):
        ReluSAEConfig.from_dict(cfg_topk.to_dict())
    assert TopKSAEConfig(d_in=4, d_sae=8, site="blocks.2.hook_mlp_out").site.layer == 2
