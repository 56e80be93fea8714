"""Super-resolution data and metrics: the photos' disjoint bands, aligned patch pairs under every
flip/rotation, exact mid-epoch resume, image folders, and the PSNR/SSIM protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from reslab import data
from reslab.config import load as C
from reslab.data.sr import PatchLoader, dihedral, make_pair
from reslab.tasks.super_resolution import luma, psnr, quantize
from support import ROOT, assert_resumes_mid_epoch

SR = ["model.name=vdsr", "model.shortcut=null", "data.name=photos"]


def _cfg(*overrides):
    return C.load([], [*SR, *overrides]).data


def test_photo_bands_are_disjoint_and_pairs_are_scale_apart():
    dm = data.build(_cfg("data.scale=3"))
    dm.setup()
    heights = {s: [hr.shape[1] for _, hr in pairs] for s, pairs in dm.pairs.items()}
    assert all(len(h) == 2 for h in heights.values())  # china and flower in every split
    assert sum(heights["train"]) + sum(heights["val"]) + sum(heights["test"]) <= 2 * 427
    for pairs in dm.pairs.values():
        for lr, hr in pairs:
            assert lr.dtype == torch.uint8 and hr.shape[1:] == (3 * lr.shape[1], 3 * lr.shape[2])
    # the validation band starts at the row after the training band of the same photo
    photo = load_sample_images().images[0]
    n_train = 299
    assert heights["train"][0] == n_train // 3 * 3
    val_hr = dm.pairs["val"][0][1]
    assert torch.equal(val_hr[:, 0], torch.tensor(photo[n_train, : val_hr.shape[2]]).T)


def _nearest_pairs(scale=2):
    """HR = LR with each pixel repeated scale x scale: aligned patches satisfy it exactly."""
    g = torch.Generator().manual_seed(0)
    lrs = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
           for h, w in ((20, 30), (25, 17))]
    return [(lr, lr.repeat_interleave(scale, 1).repeat_interleave(scale, 2)) for lr in lrs]


def _patches(**kw):
    return PatchLoader(_nearest_pairs(), lr_patch=8, scale=2, batch_size=5, size=23, augment=True,
                       seed=1, **kw)


def test_patches_stay_aligned_under_every_flip_and_rotation():
    batches = list(_patches())
    assert [len(lr) for lr, _ in batches] == [5, 5, 5, 5, 3]
    for lr, hr in batches:
        assert lr.shape[1:] == (3, 8, 8) and hr.shape[1:] == (3, 16, 16)
        torch.testing.assert_close(hr, lr.repeat_interleave(2, 2).repeat_interleave(2, 3))
    patch = torch.arange(9).reshape(1, 3, 3)
    assert len({tuple(dihedral(patch, op).flatten().tolist()) for op in range(8)}) == 8


def test_patch_loader_resumes_mid_epoch_with_the_same_batches():
    expected = assert_resumes_mid_epoch(_patches, epoch=4, skip=2)
    other = _patches()
    other.set_epoch(5)
    assert not torch.equal(next(iter(other))[0], expected[0][0])


def test_ranks_draw_different_patches_and_split_the_epoch():
    a, b = _patches(rank=0, world_size=2), _patches(rank=1, world_size=2)
    assert len(a) == len(b) == 3
    assert not torch.equal(next(iter(a))[0], next(iter(b))[0])


def test_downscaling_is_antialiased_bicubic():
    img = np.random.default_rng(0).integers(0, 256, (33, 41, 3), dtype=np.uint8)
    lr, hr = make_pair(img, 4)
    assert hr.shape == (3, 32, 40) and lr.shape == (3, 8, 10)
    expected = Image.fromarray(img[:32, :40]).resize((10, 8), Image.BICUBIC)
    assert torch.equal(lr, torch.from_numpy(np.array(expected)).permute(2, 0, 1))


def test_sr_folder_reads_images_and_says_what_is_missing(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                tmp_path / split / f"{i:04d}.png")
    dm = data.build(_cfg("data.name=sr_folder", f"data.root={tmp_path}", "data.patch_size=16"))
    dm.check()
    assert [len(dm.pairs[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape[2:] == (8, 8) and hr.shape[2:] == (16, 16) and 0 <= lr.min() <= lr.max() <= 1
    empty = data.build(_cfg("data.name=sr_folder", f"data.root={tmp_path / 'nope'}"))
    with pytest.raises(data.DataError, match=r"sr_folder needs high-resolution images in .*nope/train"):
        empty.check()


def test_a_patch_larger_than_the_training_images_is_a_sentence(tmp_path):
    dm = data.build(_cfg("data.patch_size=400"))
    with pytest.raises(data.DataError, match=r"data.patch_size=400 is larger than a training image"):
        dm.check()


def test_psnr_and_luma_follow_the_benchmark_convention():
    white = torch.ones(1, 3, 4, 4)
    assert luma(white, 0).unique().item() == pytest.approx(235 / 255)
    assert luma(white, 1).shape == (1, 1, 2, 2)
    a = torch.zeros(2, 1, 8, 8)
    b = a + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(a, b).tolist() == pytest.approx([20.0, 20.0])
    x = torch.tensor([0.5 / 255, 1.4 / 255, 2.0, -1.0])
    assert (quantize(x) * 255).tolist() == pytest.approx([0.0, 1.0, 255.0, 0.0])
    assert torch.isfinite(psnr(a, a)).all()  # identical images: capped, not inf


@pytest.mark.parametrize("overrides,message", [
    (["data.scale=5"], r"data.scale must be one of 2, 3, 4, got 5"),
    (["data.scale=3", "data.patch_size=32"], r"data.patch_size must be a multiple of data.scale=3"),
    (["data.name=digits"], r"model.name=vdsr is a super-resolution model but data.name=digits is "
                           r"a classification dataset; use data.name=photos or sr_folder"),
    (["model.preact=true"], r"model.preact=True does not apply to model.name=vdsr"),
    (["model.name=edsr", "model.shortcut=B"], r"model.shortcut must be one of identity, none for edsr"),
    (["model.depth=2"], r"model.depth \(conv layers\) must be at least 3 for vdsr, got 2"),
    (["optim.loss=l3"], r"optim.loss must be one of l1, l2"),
    (["model.freeze=stem"], r"model.freeze=stem applies to ResNet classifiers only"),
])
def test_bad_sr_values_are_refused_with_a_sentence(overrides, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load([], [*SR, *overrides])


def test_diagnostics_need_residual_blocks():
    from reslab.build import build
    from reslab.errors import UserError

    cfg = C.load([ROOT / "configs/experiment/sr_vdsr_sample.yaml"], ["diagnostics.every_n_steps=5"])
    with pytest.raises(UserError, match=r"diagnostics.every_n_steps needs a model with residual "
                                        r"blocks \(a ResNet or edsr\), got model.name=vdsr"):
        build(cfg)


def test_a_classification_model_on_photos_names_the_fitting_datasets():
    with pytest.raises(C.ConfigError, match=r"use data.name=digits or cifar10"):
        C.load([], ["model.name=cifar_resnet", "data.name=photos"])
