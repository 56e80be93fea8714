"""Super-resolution data: low-/high-resolution pairs made from high-resolution images.

The low-resolution image is the high-resolution one downscaled by `data.scale` with an
antialiased bicubic filter (PIL's, as MATLAB's imresize that DIV2K and the VDSR/EDSR benchmarks
use), quantised to 8 bits. Training draws `data.size` random aligned patch pairs per epoch
(`data.patch_size` high-resolution pixels square) with random flips and 90-degree rotations;
validation and test use whole images. Images stay in memory as uint8.

`photos` is scikit-learn's two bundled photos (china, flower), cut into non-overlapping bands:
the top 70 % of each trains, the next 15 % validates, the last 15 % tests. `sr_folder` reads
`data.root/train/*` and `data.root/val/*` (e.g. DIV2K_train_HR and DIV2K_valid_HR); its test
split is the validation split. `data.test_root` replaces either's test split by a benchmark
folder in the Set5/Set14/B100/Urban100 layout (`HR/` images; the low-resolution ones are made
here by the same bicubic as training, never read from the folder's `LR_bicubic/`).

`data.channels=y` feeds the network the luma Y (BT.601, as MATLAB's rgb2ycbcr) of both images,
the VDSR protocol: the pairs stay RGB, the low-resolution image is downscaled in RGB and its Y
taken after. Whole-image batches then carry the RGB low-resolution image as a third element,
from which the task rebuilds colour (predicted Y + bicubic Cb/Cr)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch

from reslab.data.memory import ResumableLoader
from reslab.data.sr_sources import Named, benchmark_images, folder_images, photo_images
from reslab.data.steps import SPLITS, lone_last
from reslab.errors import DataError

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig

# Evaluation shaves `scale` pixels off each border before PSNR and SSIM (the benchmarks'
# protocol), and SSIM's 11x11 window reflect-pads by 5, which needs 6 pixels left a side.
SSIM_SIDE = 6

Pair = tuple[torch.Tensor, torch.Tensor]  # (low-res, high-res) uint8 (C, h, w), (C, s*h, s*w)


class SRData(L.LightningDataModule):
    """Subclasses implement `images()` -> {split: [(name, HWC uint8 array)]} for train, val and
    (else val is the test split) test."""

    task = "super_resolution"

    def __init__(self, cfg: DataConfig, seed: int = 0):
        super().__init__()
        self.cfg, self.seed, self.scale = cfg, seed, cfg.scale
        self.luma = cfg.channels == "y"
        self.in_channels = 1 if self.luma else 3  # the network's input and output channels
        self.lr_patch = cfg.patch_size // cfg.scale
        self.input_size = (self.in_channels, self.lr_patch, self.lr_patch)
        self.pairs: dict[str, list[Pair]] = {}

    def images(self) -> dict[str, list[Named]]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise DataError naming what is missing, unreadable or too small; called before
        anything is written. Loading is the check (the pairs are kept for training)."""
        if self.cfg.classes:
            raise DataError(f"data.classes={list(self.cfg.classes)} selects classification "
                            f"labels, but data.name={self.cfg.name} is super-resolution data; "
                            "unset data.classes")
        self.setup()

    def prepare_data(self) -> None:
        self.check()

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        images = self.images()
        if self.cfg.test_root is not None:
            images["test"] = benchmark_images(Path(self.cfg.test_root))
        for split, named in images.items():
            for name, image in named:
                check_size(split, name, image, self.cfg.patch_size, self.scale)
        self.pairs = {split: [make_pair(im, self.scale) for _, im in named]
                      for split, named in images.items()}
        self.pairs.setdefault("test", self.pairs["val"])  # no test split of its own

    def sizes(self) -> dict[str, int]:
        """Training patches an epoch, validation and test images (after setup)."""
        return {"train": self.cfg.size, **{s: len(self.pairs[s]) for s in ("val", "test")}}

    def train_dataloader(self):
        self.setup()
        rank, world = self._rank_world()
        return PatchLoader(self.pairs["train"], self.lr_patch, self.scale,
                           self.cfg.batch_size, self.cfg.size, augment=self.cfg.augment,
                           seed=self.seed, rank=rank, world_size=world, luma=self.luma)

    def val_dataloader(self):
        return self._whole_images("val")

    def test_dataloader(self):
        return self._whole_images("test")

    def _whole_images(self, split: str) -> WholeImages:
        self.setup()
        rank, world = self._rank_world()
        return WholeImages(self.pairs[split][rank::world], luma=self.luma)

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)


def check_size(split: str, name: str, image: np.ndarray, patch_size: int, scale: int) -> None:
    """A training image holds a patch, an evaluation image what PSNR and SSIM measure; sides
    count after cropping to a multiple of `scale`, as `make_pair` does."""
    h, w = image.shape[:2]
    side = min(h // scale, w // scale) * scale
    if split == "train" and side < patch_size:
        raise DataError(f"data.patch_size={patch_size} is larger than a training image: {name} "
                        f"is {h}x{w} pixels; choose a smaller patch or remove the image")
    least = 2 * scale + SSIM_SIDE
    if split != "train" and side < least:
        raise DataError(f"the {SPLITS[split]} image {name} is {h}x{w} pixels; at data.scale="
                        f"{scale} evaluation needs at least {least}x{least} ({scale} pixels are "
                        f"shaved off each border, SSIM needs {SSIM_SIDE} more); remove it")


def make_pair(image: np.ndarray, scale: int) -> Pair:
    """Crop to a multiple of `scale`, downscale with PIL's antialiased bicubic, as uint8 CHW."""
    from PIL import Image

    h, w = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    hr = Image.fromarray(np.ascontiguousarray(image[:h, :w]))
    lr = hr.resize((w // scale, h // scale), Image.BICUBIC)
    return (torch.from_numpy(np.array(lr)).permute(2, 0, 1).contiguous(),
            torch.from_numpy(np.array(hr)).permute(2, 0, 1).contiguous())


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255)


# ITU-R BT.601 YCbCr as MATLAB's rgb2ycbcr (SRCNN, VDSR, EDSR), for RGB in [0, 1]: Y in
# [16, 235]/255, Cb and Cr in [16, 240]/255.
YCBCR = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)


def ycbcr(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1]."""
    m, off = images.new_tensor(YCBCR), images.new_tensor(YCBCR_OFFSET)
    return (torch.einsum("ij,njhw->nihw", m, images) + off.view(1, 3, 1, 1)) / 255


def rgb(ycc: torch.Tensor) -> torch.Tensor:
    """The inverse of `ycbcr` (not clamped)."""
    inv = torch.linalg.inv(torch.tensor(YCBCR, dtype=torch.float64)).to(ycc)
    return torch.einsum("ij,njhw->nihw", inv, ycc * 255 - ycc.new_tensor(YCBCR_OFFSET).view(1, 3, 1, 1))


def to_y(images: torch.Tensor) -> torch.Tensor:
    return ycbcr(images)[:, :1]


class PatchLoader(ResumableLoader):
    """`size` random aligned (low-res, high-res) patch pairs an epoch, in batches, each batch a
    pure function of (seed, epoch, rank, batch index): resuming mid-epoch is exact."""

    def __init__(self, pairs: list[Pair], lr_patch: int, scale: int, batch_size: int, size: int,
                 *, augment: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 luma: bool = False):
        super().__init__(seed, rank, world_size)
        self.pairs, self.lr_patch, self.scale, self.luma = pairs, lr_patch, scale, luma
        self.batch_size, self.augment = batch_size, augment
        per_rank = max(1, size // world_size)
        self.per_rank = per_rank - lone_last(per_rank, batch_size)

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(self.batch_size, self.per_rank - b * self.batch_size)
        g = self.generator(self.rank, b)
        u = torch.rand(n, 3, generator=g, dtype=torch.float64)
        ops = torch.randint(0, 8 if self.augment else 1, (n,), generator=g)
        p, s = self.lr_patch, self.scale
        lrs, hrs = [], []
        for (ui, uy, ux), op in zip(u.tolist(), ops.tolist()):
            lr, hr = self.pairs[int(ui * len(self.pairs))]
            y, x = int(uy * (lr.shape[1] - p + 1)), int(ux * (lr.shape[2] - p + 1))
            lrs.append(dihedral(lr[:, y : y + p, x : x + p], op))
            hrs.append(dihedral(hr[:, y * s : (y + p) * s, x * s : (x + p) * s], op))
        lr, hr = to_float(torch.stack(lrs)), to_float(torch.stack(hrs))
        return (to_y(lr), to_y(hr)) if self.luma else (lr, hr)


class WholeImages:
    """One whole image pair a batch, as floats (sizes differ); each rank gets every
    world_size-th image. A class, not a list: Lightning reads a list as several loaders.
    With `luma`: (low-res Y, high-res Y, low-res RGB), the last to rebuild colour."""

    def __init__(self, pairs: list[Pair], luma: bool = False):
        self.pairs, self.luma = pairs, luma

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        for lr, hr in self.pairs:
            lr, hr = to_float(lr)[None], to_float(hr)[None]
            yield (to_y(lr), to_y(hr), lr) if self.luma else (lr, hr)


def dihedral(x: torch.Tensor, op: int) -> torch.Tensor:
    """One of the 8 flips/90-degree rotations of a square patch (EDSR's augmentation)."""
    if op & 1:
        x = x.flip(-1)
    if op & 2:
        x = x.flip(-2)
    if op & 4:
        x = x.transpose(-1, -2)
    return x


class PhotosData(SRData):
    def images(self) -> dict[str, list[Named]]:
        return photo_images()


class SRFolderData(SRData):
    def images(self) -> dict[str, list[Named]]:
        return folder_images(Path(self.cfg.root))
