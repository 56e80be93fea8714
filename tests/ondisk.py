"""Tiny datasets written in the real on-disk formats (nothing is downloaded): CIFAR's pickled
batches, ImageNet-layout image folders, super-resolution folders, and damaged files of each."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar(root: Path, n_per_batch: int = 20, hundred: bool = False, seed: int = 0) -> Path:
    """Tiny CIFAR copies in torchvision's "python version" format (pickled dicts, bytes keys);
    returns the batches' folder."""
    rng = np.random.default_rng(seed)

    def batch(n, labels_key):
        return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                labels_key: rng.integers(0, 100 if hundred else 10, n).tolist(),
                b"batch_label": b"tiny"}

    if hundred:
        d = root / "cifar-100-python"
        files = {"train": 5 * n_per_batch, "test": n_per_batch}
        key = b"fine_labels"
    else:
        d = root / "cifar-10-batches-py"
        files = {**{f"data_batch_{i}": n_per_batch for i in range(1, 6)}, "test_batch": n_per_batch}
        key = b"labels"
    d.mkdir(parents=True)
    for name, n in files.items():
        with open(d / name, "wb") as f:
            pickle.dump(batch(n, key), f, protocol=2)
    return d


def write_imagefolder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 3,
                      size: int = 20) -> Path:
    """`root/{train,val}/<class>/<i>.jpg`: random JPEGs."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.jpg")
    return root


def write_png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def write_sr_folder(root: Path, train=((40, 36), (36, 44)), val=((32, 30),)) -> Path:
    """`root/train/*.png` and `root/val/*.png` of the given (height, width)s."""
    for split, sizes in (("train", train), ("val", val)):
        for i, (h, w) in enumerate(sizes):
            write_png(root / split / f"{i:04d}.png", h, w, seed=i)
    return root


def write_benchmark(root: Path, sizes=((30, 41), (27, 24))) -> Path:
    """A benchmark folder in the Set5 layout: `root/HR/*.png`."""
    for i, (h, w) in enumerate(sizes):
        write_png(root / "HR" / f"img_{i}.png", h, w, seed=i)
    return root


def garbage(_: bytes) -> bytes:
    return b"this is not an image"


def truncated(valid: bytes) -> bytes:
    return valid[: len(valid) // 2]


def damage(path: Path, how=truncated) -> Path:
    """Overwrite an image file with a damaged copy of itself."""
    path.write_bytes(how(path.read_bytes()))
    return path
