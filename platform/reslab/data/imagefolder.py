"""ImageNet-layout folders: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from reslab.config.schema import DataConfig
from reslab.data.base import DataError
from reslab.data.steps import lone_last

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolderData(L.LightningDataModule):
    task = "classification"
    in_channels = 3
    pad = 0

    def __init__(self, cfg: DataConfig, seed: int = 0, stats: dict | None = None):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        # Normalisation and eval resize: the config's, else the pretrained weights' own, else
        # ImageNet's mean/std and 8/7 x the crop.
        stats = stats or {}
        self.mean = cfg.mean or stats.get("mean") or IMAGENET_MEAN
        self.std = cfg.std or stats.get("std") or IMAGENET_STD
        self.resize_size = cfg.resize_size or stats.get("resize_size") or round(
            cfg.image_size * 8 / 7)
        self.root = Path(cfg.root)
        self.input_size = (3, cfg.image_size, cfg.image_size)
        self._sets: dict = {}

    def check(self) -> None:
        for split in ("train", "val"):
            d = self.root / split
            if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
                raise DataError(f"imagefolder needs class folders in {d} (ImageNet layout: "
                                f"{self.root}/train/<class>/*.jpg and {self.root}/val/<class>/*.jpg)")
        train, val = self._classes("train"), self._classes("val")
        if len(train) < 2:
            raise DataError(f"imagefolder {self.root}/train has {len(train)} class folder(s); "
                            "classification needs at least 2")
        if train != val:
            extra = sorted(set(train) ^ set(val))[:3]
            raise DataError(f"the class folders of {self.root}/train and {self.root}/val differ "
                            f"(e.g. {', '.join(extra)})")

    def _classes(self, split: str) -> list[str]:
        return sorted(p.name for p in (self.root / split).iterdir() if p.is_dir())

    @property
    def num_classes(self) -> int:
        self.check()
        return len(self._classes("train"))

    def prepare_data(self) -> None:
        self.check()

    def transforms(self, train: bool):
        """The paper's ImageNet augmentation (§3.4): shorter side random in [256, 480], a 224
        crop and a flip; evaluation resizes to 256 and takes the centre 224 (scaled with
        `data.image_size`)."""
        from torchvision.transforms import v2

        s = self.cfg.image_size
        tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(self.mean), list(self.std))]
        if train and self.cfg.augment:
            sizes = list(range(round(s * 8 / 7), round(s * 15 / 7) + 1))
            head = [v2.RandomShortestSize(sizes), v2.RandomCrop(s), v2.RandomHorizontalFlip()]
        else:
            head = [v2.Resize(self.resize_size), v2.CenterCrop(s)]
        return v2.Compose(head + tail)

    def setup(self, stage: str | None = None) -> None:
        from torchvision.datasets import ImageFolder

        self.check()
        if not self._sets:
            try:
                self._sets = {"train": ImageFolder(self.root / "train", self.transforms(True)),
                              "val": ImageFolder(self.root / "val", self.transforms(False))}
            except FileNotFoundError as e:  # a class folder without images
                raise DataError(f"imagefolder {self.root}: {str(e).split('. Supported')[0]} "
                                "(every class folder needs .jpg/.png images)") from None

    def sizes(self) -> dict[str, int]:
        """Images per split (after setup); the test split is the validation split."""
        return {"train": len(self._sets["train"]), "val": len(self._sets["val"]),
                "test": len(self._sets["val"])}

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        w, world = self.cfg.num_workers, self.trainer.world_size if self.trainer else 1
        per_rank = math.ceil(len(self._sets[split]) / world)  # Lightning's DistributedSampler pads
        return DataLoader(self._sets[split], self.cfg.batch_size, shuffle=train, num_workers=w,
                          persistent_workers=w > 0, pin_memory=torch.cuda.is_available(),
                          drop_last=train and lone_last(per_rank, self.cfg.batch_size))

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):  # ImageNet practice: the validation set is the test set
        return self._loader("val", False)
