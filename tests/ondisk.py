"""Tiny datasets written in the real on-disk formats (nothing is downloaded): CIFAR's pickled
batches, ImageNet-layout image folders, super-resolution folders, and damaged files of each."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# Settings that train on these tiny datasets (added to support.TINY).
IMAGEFOLDER_ARGS = ["data.name=imagefolder", "data.image_size=16", "data.num_workers=0"]
SR_ARGS = ["model.name=vdsr", "model.shortcut=null", "model.depth=3", "data.name=sr_folder",
           "data.patch_size=16", "data.size=8", "data.batch_size=4"]


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


def write_bad_data(t: Path) -> Path:
    """Under `t/data`: one damaged dataset or weights file per bad-input case of
    tests/test_bad_input.py's DATA_CASES (each named as those cases name it)."""
    root = t / "data"
    for name in ("if_ok", "if_garbage_train", "if_garbage_val", "if_trunc_train", "if_trunc_val",
                 "if_png", "if_fifo", "if_empty_class"):
        write_imagefolder(root / name)
    damage(root / "if_garbage_train/train/dog/1.jpg", garbage)
    damage(root / "if_garbage_val/val/cat/0.jpg", garbage)
    damage(root / "if_trunc_train/train/eel/2.jpg")
    damage(root / "if_trunc_val/val/dog/2.jpg")
    (root / "if_png/train/cat/x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    os.mkfifo(root / "if_fifo/val/cat/fifo.jpg")
    for f in (root / "if_empty_class/train/eel").iterdir():
        f.unlink()
    write_imagefolder(root / "if_two", classes=("a", "b"), per_class=1)
    write_bad_sr(root)
    write_bad_cifar(root)
    write_bad_weights(root)
    return root


def write_bad_sr(root: Path) -> None:
    for name in ("sr_ok", "sr_garbage_train", "sr_garbage_val", "sr_trunc_train", "sr_1px_train",
                 "sr_15px_train", "sr_3px_val", "sr_1px_val", "sr_fifo"):
        write_sr_folder(root / name)
    damage(root / "sr_garbage_train/train/0000.png", garbage)
    damage(root / "sr_garbage_val/val/0000.png", garbage)
    damage(root / "sr_trunc_train/train/0001.png")
    write_png(root / "sr_1px_train/train/tiny.png", 1, 1)
    write_png(root / "sr_15px_train/train/tiny.png", 15, 15)
    write_png(root / "sr_3px_val/val/tiny.png", 3, 3)
    write_png(root / "sr_1px_val/val/tiny.png", 1, 1)
    os.mkfifo(root / "sr_fifo/val/pipe.png")
    for name, size in (("bm_garbage", 30), ("bm_1px", 1), ("bm_9px", 9)):
        write_benchmark(root / name, sizes=((30, 41), (size, size)))
    damage(root / "bm_garbage/HR/img_0.png", garbage)


def write_bad_cifar(root: Path) -> None:
    def dump(path, obj):
        path.write_bytes(pickle.dumps(obj, protocol=2))

    images = np.zeros((2, 3072), np.uint8)
    for name, file, write in (
            ("cifar_garbage", "data_batch_2", lambda p: p.write_bytes(b"\0garbage")),
            ("cifar_trunc", "test_batch", lambda p: p.write_bytes(p.read_bytes()[:300])),
            ("cifar_empty_file", "data_batch_1", lambda p: p.write_bytes(b"")),
            ("cifar_list", "data_batch_1", lambda p: dump(p, [1, 2])),
            ("cifar_no_data", "data_batch_1", lambda p: dump(p, {b"labels": [1]})),
            ("cifar_nested_labels", "data_batch_1",
             lambda p: dump(p, {b"data": images, b"labels": [[1], [2]]})),
            ("cifar_count", "data_batch_1", lambda p: dump(p, {b"data": images, b"labels": [1]})),
            ("cifar_no_test", "test_batch",
             lambda p: dump(p, {b"data": images[:0], b"labels": []}))):
        write(write_cifar(root / name, n_per_batch=6) / file)


def write_bad_weights(root: Path) -> None:
    import torch

    from reslab import models

    net = models.build_model("resnet20")
    published = {f"module.{k}".replace("module.fc.", "module.linear."): v
                 for k, v in net.state_dict().items()}
    for name, obj in (
            ("w_list.pt", [1, 2]), ("w_tensor.pt", torch.zeros(3)),
            ("w_epoch.pt", {"epoch": 3, "global_step": 10}), ("w_state_list.pt", {"state_dict": [1]}),
            ("w_entry_int.pt", {"conv1.weight": 5}), ("w_foreign.pt", {"a.weight": torch.zeros(3)}),
            ("w_ak_two.th", {"state_dict": {k: published[k] for k in ("module.linear.weight",
                                                                       "module.conv1.weight")}}),
            ("w_ak_narrow.th", {"state_dict": {**published,
                                               "module.linear.weight": torch.zeros(10, 32)}})):
        torch.save(obj, root / name)

