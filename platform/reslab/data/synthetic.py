"""Random tensors of a given shape: for benchmarks and smoke tests, no disk involved."""

from __future__ import annotations

import torch

from reslab.config.schema import DataConfig
from reslab.data.base import ArrayData


class SyntheticData(ArrayData):
    pad, flip = 4, True  # the CIFAR augmentation, so benchmarks pay for it too

    def __init__(self, cfg: DataConfig, seed: int = 0):
        self.input_size = tuple(cfg.shape)
        self.in_channels, self.num_classes = self.input_size[0], cfg.num_classes
        super().__init__(cfg, seed)

    def load(self):
        g = torch.Generator().manual_seed(self.cfg.split_seed)
        n, n_test = self.cfg.size, max(1, self.cfg.size // 8)
        x = torch.rand(n + n_test, *self.input_size, generator=g)
        y = torch.randint(0, self.num_classes, (n + n_test,), generator=g)
        return x[:n], y[:n], x[n:], y[n:]
