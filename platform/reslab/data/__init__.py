"""LightningDataModules, built by `data.name` from the registry."""

from __future__ import annotations

from reslab.data.base import DataError
from reslab.data.cifar import CIFAR10Data, CIFAR100Data
from reslab.data.digits import DigitsData
from reslab.data.imagefolder import ImageFolderData
from reslab.data.sr import PhotosData, SRFolderData
from reslab.data.synthetic import SyntheticData
from reslab.registry import Registry

__all__ = ["DATASETS", "DataError", "build", "model_args", "task_of"]

DATASETS = Registry("dataset")
DATASETS.register("digits", DigitsData)
DATASETS.register("cifar10", CIFAR10Data)
DATASETS.register("cifar100", CIFAR100Data)
DATASETS.register("imagefolder", ImageFolderData)
DATASETS.register("synthetic", SyntheticData)
DATASETS.register("photos", PhotosData)
DATASETS.register("sr_folder", SRFolderData)


def build(cfg, seed: int = 0):
    """The DataModule for `cfg.data`; its `num_classes`, `in_channels` and `input_size` are known
    before any data is read, so the model can be built first."""
    return DATASETS.get(cfg.name).builder(cfg, seed)


def task_of(name: str) -> str:
    """`classification` or `super_resolution`: what the dataset's batches are for."""
    return DATASETS.get(name).builder.task


def model_args(dm) -> dict:
    """What the network must know of the data: channels, and classes or the upscaling factor."""
    if dm.task == "super_resolution":
        return {"in_channels": dm.in_channels, "scale": dm.scale}
    return {"in_channels": dm.in_channels, "num_classes": dm.num_classes}
