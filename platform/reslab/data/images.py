"""Image files, read the one way every dataset reads them: only regular files (a FIFO named
x.jpg would block the reader forever), fully decoded (a truncated JPEG fails here, not in a
transform), RGB, and any failure one sentence naming the file."""

from __future__ import annotations

import os
from pathlib import Path

from reslab.errors import DataError, reason

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class Unreadable(DataError):
    """An image file that does not decode."""

    def __init__(self, path: str | Path, why: str):
        super().__init__(f"image {path} cannot be read ({why}); remove or replace it")
        self.path = str(path)


def read_image(path: str | Path):
    """The image at `path` as a decoded RGB PIL image (greyscale replicated, as Set14 and B100
    need), or Unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise Unreadable(path, "it is not a regular file")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise Unreadable(path, "not an image format PIL can decode") from None
    except Exception as e:  # noqa: BLE001 - PIL's plugins raise OSError, SyntaxError, struct.error, ...
        raise Unreadable(path, reason(e)) from None


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder` (by suffix), sorted; none if it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def walk_images(folder: Path, skip: set[str] = frozenset()) -> list[str]:
    """The image files under `folder`, links followed (class folders are often links to other
    disks) but each real folder once and none of `skip`: a link to an ancestor would otherwise
    repeat the tree below it to the kernel's link depth (three such links took longer than a
    minute)."""
    seen, found = set(skip), []
    for root, dirs, files in os.walk(folder, followlinks=True):
        if (real := os.path.realpath(root)) in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def spread(n: int, k: int) -> list[int]:
    """`k` indices evenly spread over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
