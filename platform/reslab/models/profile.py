"""Parameter and multiply-accumulate counts (the paper's FLOPs column counts MACs, Table 1).

`profile` never initialises or runs the full network: it is built on the meta device (shapes,
no memory) with weight initialisation skipped, and a convolution's MACs are its weight count
times its output's spatial size — the same in a copy of the net 1/16 as wide, which runs in a
fraction of the time. `reslab models` lists all 17 models in a few seconds."""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from reslab import models

NARROW = 1 / 16  # the width of the copy whose forward pass gives the spatial sizes


def profile(name: str) -> tuple[int, int]:
    """(parameters, forward MACs at the model's listed input size) of a registered model."""
    with torch.device("meta"), _SkipInit():
        net = models.build_model(name)
    sizes = output_sizes(models.build_model(name, width=NARROW), models.info(name).input_size)
    macs = sum(m.weight.numel() * sizes.get(n, 1) for n, m in net.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))
    return count_params(net), macs


class _SkipInit(TorchFunctionMode):
    """Initialisers fill tensors in place; on the meta device there is nothing to fill."""

    FILLS = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FILLS:
            return args[0]
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def output_sizes(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, int]:
    """Spatial size (H x W) of each convolution's output for one input of `input_size`."""
    sizes: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, out, n=n: sizes.__setitem__(n, out[0, 0].numel()))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        model.eval()(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
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
        model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
