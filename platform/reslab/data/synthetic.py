"""Random tensors of a given shape: for benchmarks and smoke tests, no disk involved."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch

from reslab.data.base import ArrayData
from reslab.errors import DataError

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig


class SyntheticData(ArrayData):
    pad, flip = 4, True  # the CIFAR augmentation, so benchmarks pay for it too

    def __init__(self, cfg: DataConfig, seed: int = 0):
        self.input_size = tuple(cfg.shape)
        self.in_channels, self.num_classes = self.input_size[0], cfg.num_classes
        super().__init__(cfg, seed)

    def load(self):
        n, n_test = self.cfg.size, max(1, self.cfg.size // 8)
        check_memory(n + n_test, self.input_size, self.cfg)
        g = torch.Generator().manual_seed(self.cfg.split_seed)
        x = torch.rand(n + n_test, *self.input_size, generator=g)
        y = torch.randint(0, self.num_classes, (n + n_test,), generator=g)
        return x[:n], y[:n], x[n:], y[n:]


def check_memory(n: int, shape: tuple[int, ...], cfg: DataConfig) -> None:
    """Refuse a set that cannot be held: float32 images, kept twice (as drawn and normalised)."""
    need = 2 * 4 * n * math.prod(shape)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # a platform that does not say
        return
    if need > have:
        raise DataError(f"data.shape={list(cfg.shape)} with data.size={cfg.size} needs "
                        f"{need / 2**30:,.0f} GiB of memory ({n} float32 images, raw and "
                        f"normalised), more than this machine's {have / 2**30:,.0f} GiB; use a "
                        "smaller data.shape or data.size")
