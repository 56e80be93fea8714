"""LightningDataModules, built by `data.name`. Importing this package imports neither torch nor
Lightning: the catalogue says what each dataset is for; `build_datamodule` imports its module."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reslab.data.steps import check_steps
from reslab.errors import DataError
from reslab.registry import Registry

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig

__all__ = ["DATASETS", "DataError", "DatasetInfo", "build_datamodule", "check_steps", "model_args", "task_of"]


# The data.* keys only some datasets read (the others: every dataset). A key a dataset does not
# read must stay at its default, or the config would record a setting that did nothing.
OWN_KEYS = ("download", "classes", "image_size", "mean", "std", "resize_size", "num_classes",
            "shape", "size", "scale", "patch_size", "channels", "test_root")
SR_KEYS = ("scale", "patch_size", "channels", "test_root", "size")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str       # classification | super_resolution: what the batches are for
    builder: str    # `module:Class` under reslab.data
    keys: tuple[str, ...] = ()  # which of OWN_KEYS it reads


DATASETS: Registry[DatasetInfo] = Registry("dataset")
for _info in (DatasetInfo("digits", "classification", "digits:DigitsData", ("classes",)),
              DatasetInfo("cifar10", "classification", "cifar:CIFAR10Data", ("download", "classes")),
              DatasetInfo("cifar100", "classification", "cifar:CIFAR100Data", ("download", "classes")),
              DatasetInfo("imagefolder", "classification", "imagefolder:ImageFolderData",
                          ("classes", "image_size", "mean", "std", "resize_size")),
              DatasetInfo("synthetic", "classification", "synthetic:SyntheticData",
                          ("classes", "num_classes", "shape", "size")),
              DatasetInfo("photos", "super_resolution", "sr:PhotosData", SR_KEYS),
              DatasetInfo("sr_folder", "super_resolution", "sr:SRFolderData", SR_KEYS)):
    DATASETS.register(_info.name, _info)


def build_datamodule(cfg: DataConfig, seed: int = 0, stats: dict | None = None):
    """The DataModule for `cfg`; its `num_classes`, `in_channels` and `input_size` are known before
    any data is read, so the model can be built first. `stats` (mean, std, resize_size) come from
    pretrained weights where the config leaves them unset."""
    module, attr = DATASETS.get(cfg.name).builder.split(":")
    cls = getattr(importlib.import_module(f"reslab.data.{module}"), attr)
    return cls(cfg, seed, **({"stats": stats} if stats else {}))


def task_of(name: str) -> str:
    return DATASETS.get(name).task


def model_args(dm) -> dict:
    """What the network must know of the data: channels, and classes or the upscaling factor."""
    if dm.task == "super_resolution":
        return {"in_channels": dm.in_channels, "scale": dm.scale}
    return {"in_channels": dm.in_channels, "num_classes": dm.num_classes}
