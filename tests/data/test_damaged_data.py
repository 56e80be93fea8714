"""Damaged data on disk, opened before the run directory exists: a corrupt, truncated or
too-small image, a FIFO where an image should be, an empty class folder, broken CIFAR pickles.
Each is exit 2 and one sentence naming the file; nothing is written. An unreadable image met
while training is skipped with a warning."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from ondisk import (
    damage,
    garbage,
    truncated,
    write_benchmark,
    write_cifar,
    write_imagefolder,
    write_png,
    write_sr_folder,
)
from reslab import data
from reslab.config import load as C
from reslab.data import imagefolder
from reslab.run import train
from support import TINY, run_dir

QUIET = ["trainer.progress_bar=false", "trainer.max_epochs=1"]
IMAGEFOLDER = ["data.name=imagefolder", "data.image_size=16", "data.num_workers=0",
               "data.batch_size=4"]
SR = ["model.name=vdsr", "model.shortcut=null", "model.depth=3", "data.name=sr_folder",
      "data.patch_size=16", "data.size=8", "data.batch_size=4"]


def refused(r, tmp_path, *words):
    """Exit 2, one line on stderr holding `words`, no run directory."""
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(w in r.stderr for w in words), r.stderr
    assert not (tmp_path / "runs").exists()


def _train(cli, tmp_path, *args):
    return cli("train", *TINY, *QUIET, *args, f"run.root={tmp_path / 'runs'}")


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("how, why", [(garbage, "not an image format PIL can decode"),
                                      (truncated, "")])
def test_a_damaged_jpeg_in_an_image_folder_is_refused_naming_it(cli, tmp_path, split, how, why):
    root = write_imagefolder(tmp_path / "data")
    bad = damage(root / split / "dog" / "1.jpg", how)
    r = _train(cli, tmp_path, *IMAGEFOLDER, f"data.root={root}")
    refused(r, tmp_path, f"image {bad} cannot be read ({why}", "remove or replace it")


def test_a_damaged_png_a_fifo_and_an_empty_class_folder_are_refused(cli, tmp_path):
    root = write_imagefolder(tmp_path / "data")
    (root / "train" / "eel" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    r = _train(cli, tmp_path, *IMAGEFOLDER, f"data.root={root}")
    refused(r, tmp_path, f"image {root / 'train' / 'eel' / 'x.png'} cannot be read")
    (root / "train" / "eel" / "x.png").unlink()
    os.mkfifo(root / "val" / "cat" / "fifo.jpg")  # opening it would block forever
    r = _train(cli, tmp_path, *IMAGEFOLDER, f"data.root={root}")
    refused(r, tmp_path, f"{root / 'val' / 'cat' / 'fifo.jpg'} cannot be read (it is not a "
                         "regular file)")
    (root / "val" / "cat" / "fifo.jpg").unlink()
    for f in (root / "train" / "eel").iterdir():
        f.unlink()
    (root / "train" / "eel" / "notes.txt").write_text("not an image")
    r = _train(cli, tmp_path, *IMAGEFOLDER, f"data.root={root}")
    refused(r, tmp_path, f"imagefolder class folder {root / 'train' / 'eel'} holds no image")


def test_an_unreadable_image_met_while_training_is_skipped_with_one_warning(
        tmp_path, monkeypatch, capfd):
    """Opening decodes VERIFY images a split, spread over the folder; one outside them is found
    only when a batch reads it."""
    monkeypatch.setattr(imagefolder, "VERIFY", 2)  # the first and the last image of each split
    root = write_imagefolder(tmp_path / "data")
    bad = damage(root / "train" / "dog" / "1.jpg")
    cfg = C.load([], [*TINY, *QUIET, *IMAGEFOLDER, f"data.root={root}", "trainer.max_epochs=2",
                      "run.test=false", f"run.root={tmp_path / 'runs'}"])
    summary = train.fit(cfg)
    assert summary["status"] == "completed" and summary["global_step"] == 4  # 9 images: 4+4
    err = capfd.readouterr().err
    assert err.count(f"warning: image {bad} cannot be read") == 1, err
    assert run_dir(tmp_path / "runs").is_dir()


def test_an_unreadable_image_is_replaced_by_the_next_one(tmp_path, monkeypatch):
    root = write_imagefolder(tmp_path)
    ds = imagefolder.ReadableImages(root / "train", transform=None)
    bad = [p for p, _ in ds.samples].index(str(root / "train" / "cat" / "2.jpg"))
    damage(root / "train" / "cat" / "2.jpg", garbage)
    image, label = ds[bad]
    assert label == 1 and np.array_equal(np.asarray(image), np.asarray(ds[bad + 1][0]))
    for f in (root / "train" / "dog").iterdir():
        damage(f, garbage)
    monkeypatch.setattr(imagefolder, "SKIP_LIMIT", 4)
    with pytest.raises(data.DataError, match=r"4 images in a row from index 2 .* cannot be read"):
        ds[bad]


def test_data_classes_keeps_those_class_folders_relabelled(tmp_path):
    root = write_imagefolder(tmp_path, classes=("a", "b", "c", "d"))
    dm = data.build_datamodule(C.load([], [*IMAGEFOLDER, f"data.root={root}", "data.classes=[3, 1]",
                                "data.batch_size=16"]).data)
    assert dm.num_classes == 2
    dm.setup()
    assert dm.sizes() == {"train": 6, "val": 6, "test": 6}
    folders = {os.path.basename(os.path.dirname(p)): t for p, t in dm._sets["val"].samples}
    assert folders == {"d": 0, "b": 1}
    x, y = next(iter(dm.train_dataloader()))
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1] and x.shape == (6, 3, 16, 16)


@pytest.mark.parametrize("overrides, words", [
    (["data.classes=[1, 4]"], ["data.classes has labels [4] but", "has 3 class folders"]),
    (["data.std=[0.2, 0.2]"], ["data.std has 2 values", "one per channel (3)"]),
    (["data.mean=[0.5, 0.5]"], ["data.mean has 2 values"]),
])
def test_image_folder_values_it_cannot_honour_are_refused(cli, tmp_path, overrides, words):
    root = write_imagefolder(tmp_path / "data")
    refused(_train(cli, tmp_path, *IMAGEFOLDER, f"data.root={root}", *overrides), tmp_path, *words)


def test_one_normalisation_value_serves_every_channel(tmp_path):
    root = write_imagefolder(tmp_path)
    dm = data.build_datamodule(C.load([], [*IMAGEFOLDER, f"data.root={root}", "data.mean=[0.5]",
                                "data.std=[0.25]"]).data)
    x, _ = next(iter(dm.val_dataloader()))
    assert torch.isfinite(x).all() and x.min() >= -2 and x.max() <= 2


def _sr_images(tmp_path, where):
    """An SR folder plus a benchmark folder; returns the folder of `where` (train, val, test)."""
    root = write_sr_folder(tmp_path / "sr")
    bench = write_benchmark(tmp_path / "Set5")
    return {"train": root / "train", "val": root / "val", "test": bench / "HR"}[where]


@pytest.mark.parametrize("where", ["train", "val", "test"])
@pytest.mark.parametrize("how", [garbage, truncated])
def test_a_damaged_sr_image_is_refused_naming_it(cli, tmp_path, where, how):
    folder = _sr_images(tmp_path, where)
    bad = damage(sorted(folder.iterdir())[0], how)
    r = _train(cli, tmp_path, *SR, f"data.root={tmp_path / 'sr'}",
               f"data.test_root={tmp_path / 'Set5'}")
    refused(r, tmp_path, f"image {bad} cannot be read (")


@pytest.mark.parametrize("where, side, words", [
    ("train", 1, ["larger than a training image", "is 1x1 pixels"]),
    ("train", 15, ["data.patch_size=16 is larger than a training image", "is 15x15 pixels"]),
    ("val", 1, ["the validation image", "is 1x1 pixels; at data.scale=2 evaluation needs at "
                                          "least 10x10"]),
    ("val", 3, ["the validation image", "is 3x3 pixels"]),
    ("val", 11, ["is 11x11 pixels"]),  # cropped to 10x10 at scale 2: just enough
    ("test", 1, ["the test image", "is 1x1 pixels"]),
    ("test", 9, ["the test image", "is 9x9 pixels"]),
])
def test_an_sr_image_too_small_to_train_or_evaluate_is_refused(cli, tmp_path, where, side, words):
    bad = write_png(_sr_images(tmp_path, where) / "tiny.png", side, side)
    r = _train(cli, tmp_path, *SR, f"data.root={tmp_path / 'sr'}",
               f"data.test_root={tmp_path / 'Set5'}", "run.test=true")
    if side == 11:
        assert r.returncode == 0, r.stderr
        return
    refused(r, tmp_path, str(bad), *words)


def test_an_sr_fifo_and_data_classes_on_sr_data_are_refused(cli, tmp_path):
    root = write_sr_folder(tmp_path / "sr")
    os.mkfifo(root / "val" / "pipe.png")
    r = _train(cli, tmp_path, *SR, f"data.root={root}")
    refused(r, tmp_path, f"{root / 'val' / 'pipe.png'} cannot be read (it is not a regular file)")
    r = _train(cli, tmp_path, *SR[:3], "data.name=photos", "data.classes=[0, 1]")
    refused(r, tmp_path, "data.classes=[0, 1] does not apply to data.name=photos, only to digits")


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("file, write, words", [
    ("data_batch_2", lambda p: p.write_bytes(b"\0garbage"), ["is not a CIFAR batch file"]),
    ("test_batch", lambda p: p.write_bytes(p.read_bytes()[:300]), ["pickle data was truncated"]),
    ("data_batch_1", lambda p: p.write_bytes(b""), ["is not a CIFAR batch file"]),
    ("data_batch_1", lambda p: _dump(p, [1, 2]), ["it holds a list, not a dict"]),
    ("data_batch_1", lambda p: _dump(p, {b"labels": [1]}), ["no b'data' entry"]),
    ("data_batch_1", lambda p: _dump(p, {b"data": np.zeros((2, 3072), np.uint8),
                                         b"labels": [[1], [2]]}), ["labels of shape [2, 1]"]),
    ("data_batch_1", lambda p: _dump(p, {b"data": np.zeros((2, 3072), np.uint8),
                                         b"labels": [1]}), ["holds 2 images but labels"]),
    ("test_batch", lambda p: _dump(p, {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}),
     ["data.name=cifar10 has 0 test images"]),
])
def test_a_damaged_cifar_batch_is_one_sentence_naming_it(cli, tmp_path, file, write, words):
    d = write_cifar(tmp_path / "data", n_per_batch=6)
    write(d / file)
    r = _train(cli, tmp_path, "data.name=cifar10", f"data.root={tmp_path / 'data'}",
               "data.val_size=5")
    refused(r, tmp_path, *words)
    if "test images" not in words[0]:
        assert str(d / file) in r.stderr


def test_an_empty_cifar_training_batch_is_read(tmp_path):
    d = write_cifar(tmp_path, n_per_batch=6)
    _dump(d / "data_batch_3", {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    dm = data.build_datamodule(C.load([], [*TINY, "data.name=cifar10", f"data.root={tmp_path}",
                                "data.val_size=4"]).data)
    dm.setup()
    assert dm.sizes() == {"train": 20, "val": 4, "test": 6}


def test_links_are_followed_but_a_loop_is_walked_once(tmp_path):
    """A link back to the split from every class folder repeated the tree 3^40 times (a hang);
    a class folder that is a link to another disk is the usual ImageNet setup and is read."""
    root = write_imagefolder(tmp_path / "data")
    for c in ("cat", "dog", "eel"):
        (root / "train" / c / "loop").symlink_to("..")
        (root / "val" / c / "self").symlink_to(".")
    elsewhere = write_imagefolder(tmp_path / "other", classes=("fox",), per_class=2)
    for split in ("train", "val"):
        (root / split / "fox").symlink_to(elsewhere / split / "fox")
        os.makedirs(root / split / "cat" / "deeper")
        write_png(root / split / "cat" / "deeper" / "x.png", 20, 20)
    dm = data.build_datamodule(C.load([], [*IMAGEFOLDER, f"data.root={root}"]).data)
    dm.setup()
    assert dm.num_classes == 4 and dm.sizes() == {"train": 12, "val": 12, "test": 12}
    per_class = dm._sets["train"].counts()
    assert per_class == {"cat": 4, "dog": 3, "eel": 3, "fox": 2}
