"""How many batches a split gives each device, and the refusal of data that would train or
evaluate on nothing. Imports neither torch nor Lightning."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from reslab.errors import DataError

if TYPE_CHECKING:  # a type only: config sits above data (it validates against the catalogue)
    from reslab.config.schema import DataConfig

SPLITS = {"train": "training", "val": "validation", "test": "test"}
# Each device needs two training images (a batch of one is dropped, see `lone_last`) and one
# validation and test image (an empty split logs no metric, and best.ckpt follows val).
AT_LEAST = {"train": 2, "val": 1, "test": 1}


def lone_last(n: int, batch_size: int) -> bool:
    """Whether `n` training samples in batches of `batch_size` end with a batch of one image, which
    every training loader drops (the image is back in the next epoch's shuffle): BatchNorm cannot
    normalise a single image whose feature map has shrunk to 1x1 (an ImageNet ResNet's layer4 on
    32-pixel images fails mid-epoch). Every other partial batch is trained, as PyTorch's default
    drop_last=False: a dataset smaller than one batch trains on all of it each step, not on
    nothing (a 90-image folder at batch 128 would otherwise "complete" with zero steps)."""
    return n > 1 and n % batch_size == 1


def train_batches(images: int, batch_size: int) -> int:
    """Training batches an epoch for `images` on one device."""
    return math.ceil((images - lone_last(images, batch_size)) / batch_size)


def check_steps(sizes: dict[str, int], cfg: DataConfig, world_size: int,
                limit_train_batches: float | None) -> None:
    """Refuse, before the run directory exists, data that would train or evaluate on nothing.
    `sizes`: images per split (a super-resolution training split counts its patches an epoch)."""
    for split, least in AT_LEAST.items():
        if sizes[split] // world_size < least:
            devices = f" for {world_size} devices" if world_size > 1 else ""
            raise DataError(f"data.name={cfg.name} has {sizes[split]} {SPLITS[split]} "
                            f"image{'s' * (sizes[split] != 1)}{devices}; training needs at least "
                            f"{least * world_size}")
    batches = train_batches(sizes["train"] // world_size, cfg.batch_size)
    limit = limit_train_batches
    if limit is not None and limit <= 1 and int(batches * limit) < 1:
        raise DataError(f"trainer.limit_train_batches={limit} keeps none of the {batches} "
                        f"training batch{'es' * (batches != 1)} an epoch holds "
                        f"({sizes['train']} images, data.batch_size={cfg.batch_size}); use a "
                        f"fraction of at least 1/{batches} or a count of batches")
