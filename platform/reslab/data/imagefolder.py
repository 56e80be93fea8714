"""ImageNet-layout folders: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`.

Opening the data checks it before the run exists: every class folder holds images, data.classes
names existing classes, and up to VERIFY images of each split, evenly spread, decode (all of a
small folder; ImageNet's 1.28 M would take minutes). An unreadable image met later, while
training, is skipped with a warning naming it and the next readable one takes its place in the
batch: real datasets have the odd bad JPEG, and one must not end a multi-day run."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from reslab.data.images import IMAGE_SUFFIXES, Unreadable, read_image, spread, walk_images
from reslab.data.steps import lone_last
from reslab.errors import DataError

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VERIFY = 256        # images of each split decoded when the data is opened
SKIP_LIMIT = 64     # consecutive unreadable images after which the folder is given up on


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
        """The layout, the classes and the normalisation, without reading an image."""
        for split in ("train", "val"):
            d = self.root / split
            if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
                raise DataError(f"imagefolder needs class folders in {d} (ImageNet layout: "
                                f"{self.root}/train/<class>/*.jpg and {self.root}/val/<class>/*.jpg)")
        train, val = self.class_names("train"), self.class_names("val")
        if len(train) < 2:
            raise DataError(f"imagefolder {self.root}/train has {len(train)} class folder(s); "
                            "classification needs at least 2")
        if train != val:
            extra = sorted(set(train) ^ set(val))[:3]
            raise DataError(f"the class folders of {self.root}/train and {self.root}/val differ "
                            f"(e.g. {', '.join(extra)})")
        if beyond := [c for c in self.cfg.classes or () if c >= len(train)]:
            raise DataError(f"data.classes has labels {beyond} but {self.root}/train has "
                            f"{len(train)} class folders (labels 0..{len(train) - 1}, in sorted "
                            f"order: {', '.join(train[:3])}, ...)")
        for key, values in (("data.mean", self.mean), ("data.std", self.std)):
            if len(values) not in (1, 3):
                raise DataError(f"{key} has {len(values)} values; imagefolder images are RGB: "
                                "give one value, or one per channel (3)")

    def class_names(self, split: str) -> list[str]:
        """The class folders of `split`, sorted (what each output of the network means)."""
        return sorted(p.name for p in (self.root / split).iterdir() if p.is_dir())

    @property
    def num_classes(self) -> int:
        self.check()
        return len(self.cfg.classes) if self.cfg.classes else len(self.class_names("train"))

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
        self.check()
        if not self._sets:
            self._sets = {"train": self._open("train", self.transforms(True)),
                          "val": self._open("val", self.transforms(False))}

    def _open(self, split: str, transform) -> ReadableImages:
        images = ReadableImages(self.root / split, transform)
        if empty := [c for c, n in images.counts().items() if n == 0]:
            raise DataError(f"imagefolder class folder {self.root / split / empty[0]} holds no "
                            f"image ({', '.join(IMAGE_SUFFIXES)})")
        if self.cfg.classes:
            images.keep(list(self.cfg.classes))
        for i in spread(len(images), VERIFY):
            read_image(images.samples[i][0])  # Unreadable: a sentence naming the file
        return images

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


class ReadableImages(ImageFolder):
    """torchvision's ImageFolder, read with `read_image`; an unreadable image is replaced by the
    next readable one (warned once per file and process, since DataLoader workers are processes)."""

    def __init__(self, root: Path, transform):
        super().__init__(root, transform, loader=read_image, allow_empty=True)
        self.warned: set[str] = set()

    @staticmethod
    def make_dataset(directory, class_to_idx: dict[str, int], extensions=None,
                     is_valid_file=None, allow_empty: bool = False) -> list[tuple[str, int]]:
        """(path, class index) of every image, each real folder walked once (`walk_images`);
        a link from one class folder into the split or another class is not followed."""
        folders = {name: os.path.realpath(Path(directory) / name) for name in class_to_idx}
        split = {os.path.realpath(directory), *folders.values()}
        return [(path, index) for name, index in sorted(class_to_idx.items())
                for path in walk_images(Path(directory) / name, split - {folders[name]})]

    def counts(self) -> dict[str, int]:
        """Images per class folder."""
        n = dict.fromkeys(self.classes, 0)
        for _, target in self.samples:
            n[self.classes[target]] += 1
        return n

    def keep(self, classes: list[int]) -> None:
        """Only the images of `classes` (indices into the sorted class folders), relabelled
        0..k-1 in the order given, as data.classes does for the in-memory sets."""
        new = {old: i for i, old in enumerate(classes)}
        self.samples = [(p, new[t]) for p, t in self.samples if t in new]
        self.imgs, self.targets = self.samples, [t for _, t in self.samples]
        self.classes = [self.classes[c] for c in classes]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __getitem__(self, index: int):
        for k in range(SKIP_LIMIT):
            try:
                return super().__getitem__((index + k) % len(self))
            except Unreadable as e:
                if e.path not in self.warned:
                    self.warned.add(e.path)
                    print(f"warning: {e} (skipped: the next image takes its place)",
                          file=sys.stderr, flush=True)
        raise DataError(f"{SKIP_LIMIT} images in a row from index {index} of {self.root} cannot "
                        "be read; check the dataset")
