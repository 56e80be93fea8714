"""Where super-resolution images come from: scikit-learn's two bundled photos cut into bands,
image folders (DIV2K-like), benchmark folders (Set5 layout). Each image comes with the name that
a refusal quotes (its file, or the photo and band)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reslab.data.images import IMAGE_SUFFIXES, image_files, read_image
from reslab.errors import DataError

Named = tuple[str, np.ndarray]  # (what a message calls it, HWC uint8 RGB)
BANDS = {"train": (0.0, 0.7), "val": (0.7, 0.85), "test": (0.85, 1.0)}


def photo_images() -> dict[str, list[Named]]:
    """The photos (china, flower), each cut into non-overlapping bands per split."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    names = [Path(f).name for f in photos.filenames]
    return {split: [(f"{name} ({split} band)", band(im, lo, hi))
                    for name, im in zip(names, photos.images)]
            for split, (lo, hi) in BANDS.items()}


def band(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    h = image.shape[0]
    return image[round(lo * h) : round(hi * h)]


def folder_images(root: Path) -> dict[str, list[Named]]:
    """`root/train/*` and `root/val/*` (the test split is the validation split)."""
    files = {s: image_files(root / s) for s in ("train", "val")}
    if missing := [s for s, f in files.items() if not f]:
        raise DataError(f"sr_folder needs high-resolution images in {root / missing[0]} "
                        f"({', '.join(IMAGE_SUFFIXES)}; e.g. DIV2K_train_HR's in "
                        f"{root}/train and DIV2K_valid_HR's in {root}/val)")
    return {s: [read_named(f) for f in fs] for s, fs in files.items()}


def benchmark_images(root: Path) -> list[Named]:
    """The high-resolution images of a benchmark folder (Set5/Set14/B100/Urban100 as in EDSR's
    benchmark.tar: `<root>/HR/*.png`)."""
    if not (files := image_files(root / "HR")):
        raise DataError(f"data.test_root={root} needs the benchmark's high-resolution images in "
                        f"{root / 'HR'} (the Set5/Set14/B100/Urban100 layout; "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    return [read_named(f) for f in files]


def read_named(path: Path) -> Named:
    return str(path), np.asarray(read_image(path))
