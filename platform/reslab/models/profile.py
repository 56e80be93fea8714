"""Parameter and multiply-accumulate counts (the paper's FLOPs column counts MACs, Table 1).
`profile` builds the network on PyTorch's meta device: shapes only, no memory, so a 1202-layer
net is counted in well under a second."""

from __future__ import annotations

import torch
from torch import nn

from reslab import models


def profile(name: str) -> tuple[int, int]:
    """(parameters, forward MACs at the model's listed input size) of a registered model."""
    with torch.device("meta"):
        net = models.build(name)
    return count_params(net), count_macs(net, models.info(name).input_size, device="meta")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...], device: str = "cpu") -> int:
    """Forward MACs of convolutions and linear layers for one image of `input_size` (C, H, W)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules()
              if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
