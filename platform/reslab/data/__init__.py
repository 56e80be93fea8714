"""LightningDataModules, built by `data.name` from the registry."""

from __future__ import annotations

from reslab.data.base import DataError
from reslab.data.cifar import CIFAR10Data, CIFAR100Data
from reslab.data.digits import DigitsData
from reslab.data.imagefolder import ImageFolderData
from reslab.data.synthetic import SyntheticData
from reslab.registry import Registry

__all__ = ["DATASETS", "DataError", "build"]

DATASETS = Registry("dataset")
DATASETS.register("digits", DigitsData)
DATASETS.register("cifar10", CIFAR10Data)
DATASETS.register("cifar100", CIFAR100Data)
DATASETS.register("imagefolder", ImageFolderData)
DATASETS.register("synthetic", SyntheticData)


def build(cfg, seed: int = 0):
    """The DataModule for `cfg.data`; its `num_classes`, `in_channels` and `input_size` are known
    before any data is read, so the model can be built first."""
    return DATASETS.get(cfg.name).builder(cfg, seed)
