"""Shared LightningDataModule for datasets that fit in memory (digits, CIFAR, synthetic)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from reslab.data.memory import MemoryLoader, random_crop_flip
from reslab.data.steps import lone_last
from reslab.errors import DataError

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig


class ArrayData(L.LightningDataModule):
    """Subclasses set `in_channels`, `num_classes`, `input_size`, `pad`, `flip` and implement
    `load()` -> (train_x, train_y, test_x, test_y) as float tensors in [0, 1] (N, C, H, W) and
    int64 labels. The validation split is carved from the training set with `data.split_seed`,
    so it is the same for every run and seed."""

    task = "classification"
    in_channels: int
    num_classes: int
    input_size: tuple[int, int, int]
    pad: int = 0
    flip: bool = False

    def __init__(self, cfg: DataConfig, seed: int = 0):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.label_count = self.num_classes  # the dataset's own labels, before data.classes
        if cfg.classes:
            self.num_classes = len(cfg.classes)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare_data(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise DataError naming what is missing; called before anything is written."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train_x, train_y, test_x, test_y = self.load()
        for split, y in (("training", train_y), ("test", test_y)):
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.label_count):
                raise DataError(f"the {split} labels of data.name={self.cfg.name} run from "
                                f"{int(y.min())} to {int(y.max())}, outside 0..{self.label_count - 1}")
        if self.cfg.classes:
            train_x, train_y = keep_classes(train_x, train_y, list(self.cfg.classes))
            test_x, test_y = keep_classes(test_x, test_y, list(self.cfg.classes))
        val_idx, train_idx = self.split(len(train_x))
        norm = Normalizer(self.cfg.normalize, train_x[train_idx])
        self.splits = {
            "train": (norm(train_x[train_idx]), train_y[train_idx]),
            "val": (norm(train_x[val_idx]), train_y[val_idx]),
            "test": (norm(test_x), test_y),
        }

    def split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation and training indices into the (class-filtered) training images: one fixed
        shuffle by data.split_seed (export fits the same normalisation on the same images)."""
        n_val = self._val_count(n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.split_seed))
        return perm[:n_val].sort().values, perm[n_val:].sort().values

    def _val_count(self, n: int) -> int:
        v = self.cfg.val_size
        count = int(round(v * n)) if v < 1 else int(v)
        if count < 1:
            raise DataError(f"data.val_size={v} holds out no image of the {n} training images; "
                            "use a larger fraction or a count")
        if count >= n:
            raise DataError(f"data.val_size={v} leaves no training data (the training set has "
                            f"{n} images)")
        return count

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def sizes(self) -> dict[str, int]:
        """Images per split (after setup)."""
        return {split: len(y) for split, (_, y) in self.splits.items()}

    def _loader(self, split: str, train: bool):
        self.setup()
        pad, flip = (self.pad, self.flip) if train and self.cfg.augment else (0, False)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.cfg.pipeline == "loader":
            ds = AugmentedTensors(*self.splits[split], pad=pad, flip=flip)
            per_rank = math.ceil(len(ds) / world)  # Lightning's DistributedSampler pads
            return DataLoader(ds, self.cfg.batch_size, shuffle=train,
                              num_workers=self.cfg.num_workers,
                              persistent_workers=self.cfg.num_workers > 0,
                              drop_last=train and lone_last(per_rank, self.cfg.batch_size))
        x, y = self._device_split(split)
        return MemoryLoader(x, y, self.cfg.batch_size, shuffle=train, pad=pad, flip=flip,
                            seed=self.seed, rank=rank, world_size=world)

    def _device_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if split not in self._on_device or self._on_device[split][0].device != device:
            x, y = self.splits[split]
            self._on_device[split] = (x.to(device), y.to(device))
        return self._on_device[split]


def keep_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int]):
    """Only the images of `classes`, relabelled 0..k-1 in the order given."""
    missing = [c for c in classes if not (y == c).any()]
    if missing:
        raise DataError(f"data.classes has labels with no images: {missing}")
    keep = torch.isin(y, torch.tensor(classes))
    lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], lookup[y[keep]]


class Normalizer:
    """The paper subtracts the per-pixel mean of the training images (§4.2); `channel` is the
    usual per-channel standardisation."""

    def __init__(self, kind: str, train_x: torch.Tensor):
        self.kind = kind
        if kind == "pixel_mean":
            self.mean, self.std = train_x.mean(0), torch.ones(())
        elif kind == "channel":
            self.mean = train_x.mean((0, 2, 3))[:, None, None]
            self.std = train_x.std((0, 2, 3))[:, None, None].clamp_min(1e-6)
        else:
            self.mean, self.std = torch.zeros(()), torch.ones(())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous()


class AugmentedTensors(Dataset):
    """The per-sample path (`data.pipeline=loader`): the same augmentation, one image at a time in
    DataLoader workers — the baseline the in-memory pipeline is measured against."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int, flip: bool):
        self.x, self.y, self.pad, self.flip = x, y, pad, flip

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        x = self.x[i : i + 1]
        if self.pad or self.flip:
            x = random_crop_flip(x, self.pad, self.flip, torch.default_generator)
        return x[0], self.y[i]
