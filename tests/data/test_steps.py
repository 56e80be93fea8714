"""The zero-step case and its neighbours: a dataset smaller than one batch trains on all of it, no
training batch holds a single image, and data that would train or evaluate on nothing is refused
before the run directory exists."""

from __future__ import annotations

import json

import pytest
import torch

from ondisk import write_cifar, write_imagefolder, write_sr_folder
from reslab import data
from reslab.config import load as C
from reslab.data.memory import MemoryLoader
from reslab.data.steps import check_steps, lone_last
from reslab.run import train
from support import TINY, run_dir

QUIET = ["trainer.progress_bar=false", "trainer.max_epochs=1", "run.test=false"]
IMAGEFOLDER = ["data.name=imagefolder", "data.image_size=16", "data.num_workers=0"]


def _summary(root):
    return json.loads((run_dir(root) / "summary.json").read_text())


def test_a_folder_smaller_than_one_batch_trains_on_all_of_it(tmp_path):
    write_imagefolder(tmp_path / "data", per_class=3)  # 9 training images
    cfg = C.load([], [*TINY, *QUIET, *IMAGEFOLDER, f"data.root={tmp_path / 'data'}",
                      "data.batch_size=128", f"run.root={tmp_path / 'runs'}"])
    train.fit(cfg)
    summary = _summary(tmp_path / "runs")
    assert summary["status"] == "completed" and summary["global_step"] == 1
    assert summary["epoch"] == 1 and "train/loss" in summary


@pytest.mark.parametrize("n", [17, 33, 2, 16, 18])
def test_no_training_batch_holds_a_single_image(n):
    x, y = torch.zeros(n, 1, 2, 2), torch.arange(n)
    sizes = [len(b) for b, _ in MemoryLoader(x, y, batch_size=16, shuffle=True)]
    assert 1 not in sizes and sum(sizes) >= n - 1
    assert len(sizes) == (n - lone_last(n, 16) + 15) // 16
    evaluated = [len(b) for b, _ in MemoryLoader(x, y, batch_size=16, shuffle=False)]
    assert sum(evaluated) == n  # evaluation keeps every image


def test_the_lone_image_differs_between_epochs():
    x, y = torch.zeros(17, 1, 2, 2), torch.arange(17)
    loader = MemoryLoader(x, y, batch_size=16, shuffle=True)
    left_out = set()
    for epoch in range(6):
        loader.set_epoch(epoch)
        left_out |= set(range(17)) - set(torch.cat([b for _, b in loader]).tolist())
    assert len(left_out) > 1


@pytest.mark.parametrize("pipeline", ["memory", "loader"])
def test_an_imagenet_resnet_trains_when_the_last_batch_would_hold_one_image(tmp_path, pipeline):
    """ResNet-18's layer4 is 1x1 on 32-pixel images: BatchNorm refuses a batch of one there."""
    write_cifar(tmp_path / "data", n_per_batch=4)  # 20 training images: 17 train + 3 val
    cfg = C.load([], [*TINY, *QUIET, "model.name=resnet18", "model.depth=null",
                      "data.name=cifar10",
                      f"data.root={tmp_path / 'data'}", "data.val_size=3", "data.batch_size=16",
                      f"data.pipeline={pipeline}", "data.num_workers=0",
                      f"run.root={tmp_path / 'runs'}"])
    train.fit(cfg)
    assert _summary(tmp_path / "runs")["global_step"] == 1


def test_image_folder_loaders_drop_only_a_lone_last_image(tmp_path):
    write_imagefolder(tmp_path, classes=("a", "b", "c", "d"), per_class=4)  # 16 images a split
    for bs, batches in ((5, 3), (4, 4), (20, 1)):
        dm = data.build_datamodule(C.load([], [*IMAGEFOLDER, f"data.root={tmp_path}",
                                    f"data.batch_size={bs}"]).data)
        assert len(dm.train_dataloader()) == batches
        assert sum(len(b[1]) for b in dm.val_dataloader()) == 16


def _data(*overrides):
    return C.load([], ["model.name=cifar_resnet", *overrides]).data


@pytest.mark.parametrize("sizes, world, message", [
    ({"train": 1, "val": 5, "test": 5}, 1, "has 1 training image; training needs at least 2"),
    ({"train": 3, "val": 5, "test": 5}, 2, "has 3 training images for 2 devices; training needs "
                                           "at least 4"),
    ({"train": 50, "val": 0, "test": 5}, 1, "has 0 validation images; training needs at least 1"),
    ({"train": 50, "val": 1, "test": 5}, 2, "has 1 validation image for 2 devices"),
    ({"train": 50, "val": 5, "test": 0}, 1, "has 0 test images"),
])
def test_a_split_too_small_for_the_devices_is_refused(sizes, world, message):
    with pytest.raises(data.DataError, match=message):
        check_steps(sizes, _data(), world, None)


@pytest.mark.parametrize("limit, ok", [(0.001, False), (0.19, False), (0.2, True), (1.0, True),
                                       (3.0, True), (None, True)])
def test_a_limit_of_training_batches_must_keep_one(limit, ok):
    sizes = {"train": 1222, "val": 216, "test": 359}  # 5 batches of 256
    if ok:
        check_steps(sizes, _data("data.batch_size=256"), 1, limit)
    else:
        with pytest.raises(data.DataError, match=rf"limit_train_batches={limit} keeps none of "
                                                 r"the 5 training batches .* at least 1/5"):
            check_steps(sizes, _data("data.batch_size=256"), 1, limit)


@pytest.mark.parametrize("overrides, message", [
    (["trainer.limit_train_batches=0.001"], "keeps none of the 5 training batches"),
    (["data.val_size=0.999"], "has 1 training image"),
    (["data.val_size=1437"], "has 1 training image"),
    (["data.val_size=1438"], "leaves no training data"),
    (["data.val_size=0.0001"], "holds out no image"),
    (["data.classes=[3, 5]", "data.val_size=0.001"], "holds out no image of the 291"),
])
def test_digits_that_would_train_on_nothing_exit_2_before_the_run(cli, tmp_path, overrides,
                                                                  message):
    r = cli("train", *TINY, *QUIET, *overrides, f"run.root={tmp_path / 'runs'}")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_one_patch_epoch_and_a_tiny_folder_for_two_devices_are_refused(cli, tmp_path):
    write_sr_folder(tmp_path / "sr")
    r = cli("train", "model.name=vdsr", "model.shortcut=null", "data.name=sr_folder",
            f"data.root={tmp_path / 'sr'}", "data.patch_size=16", "data.size=1",
            f"run.root={tmp_path / 'runs'}", *QUIET)
    assert r.returncode == 2 and "data.name=sr_folder has 1 training image" in r.stderr
    write_imagefolder(tmp_path / "if", classes=("a", "b"), per_class=1)
    r = cli("train", *TINY, *IMAGEFOLDER, f"data.root={tmp_path / 'if'}", "trainer.devices=2",
            f"run.root={tmp_path / 'runs'}", *QUIET)
    assert r.returncode == 2 and "2 training images for 2 devices" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()
