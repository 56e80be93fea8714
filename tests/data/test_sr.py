"""Super-resolution data and metrics: the photos' disjoint bands, aligned patch pairs under every
flip/rotation, exact mid-epoch resume, image folders, the PSNR/SSIM protocol, training on luma
(data.channels=y) with colour samples, and benchmark folders (Set5 layout) as the test split."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from reslab import data
from reslab.config import load as C
from reslab.data.sr import PatchLoader, dihedral, make_pair, rgb, ycbcr
from reslab.models.sr import bicubic
from reslab.tasks.super_resolution import in_colour, luma, psnr, quantize
from reslab.tracking import checkpoint
from support import ROOT, assert_resumes_mid_epoch, run_dir

SR = ["model.name=vdsr", "model.shortcut=null", "data.name=photos"]


def _cfg(*overrides):
    return C.load([], [*SR, *overrides]).data


def test_photo_bands_are_disjoint_and_pairs_are_scale_apart():
    dm = data.build_datamodule(_cfg("data.scale=3"))
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
    assert len(a) == len(b) == 2  # 11 patches a rank in batches of 5: the lone 11th is dropped
    assert [len(lr) for lr, _ in a] == [5, 5]
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
    dm = data.build_datamodule(_cfg("data.name=sr_folder", f"data.root={tmp_path}", "data.patch_size=16"))
    dm.check()
    assert [len(dm.pairs[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape[2:] == (8, 8) and hr.shape[2:] == (16, 16) and 0 <= lr.min() <= lr.max() <= 1
    empty = data.build_datamodule(_cfg("data.name=sr_folder", f"data.root={tmp_path / 'nope'}"))
    with pytest.raises(data.DataError, match=r"sr_folder needs high-resolution images in .*nope/train"):
        empty.check()


def test_a_patch_larger_than_the_training_images_is_a_sentence(tmp_path):
    dm = data.build_datamodule(_cfg("data.patch_size=400"))
    with pytest.raises(data.DataError, match=r"data.patch_size=400 is larger than a training "
                                             r"image: china.jpg \(train band\) is 299x640 pixels"):
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
    from reslab.errors import UserError
    from reslab.run.build import build_net_and_data

    cfg = C.load([ROOT / "configs/experiment/sr_vdsr_sample.yaml"], ["diagnostics.every_n_steps=5"])
    with pytest.raises(UserError, match=r"diagnostics.every_n_steps needs a model with residual "
                                        r"blocks \(a ResNet or edsr\), got model.name=vdsr"):
        build_net_and_data(cfg)


def test_a_classification_model_on_photos_names_the_fitting_datasets():
    with pytest.raises(C.ConfigError, match=r"use data.name=digits or cifar10"):
        C.load([], ["model.name=cifar_resnet", "data.name=photos"])


# --- data.channels (the VDSR protocol on luma) and benchmark folders as the test split ---

Y_TINY = ["configs/experiment/sr_vdsr_sample.yaml", "data.channels=y", "model.depth=3",
          "model.width=0.25", "data.patch_size=16", "data.size=16", "data.batch_size=8",
          "trainer.max_epochs=1", "trainer.accelerator=cpu"]


def _benchmark(root, sizes=((30, 41), (27, 24)), grey=(33, 36)):
    """A benchmark folder in EDSR's benchmark.tar layout, with a decoy LR folder that must not
    be read (the low-resolution images are made here, by the training bicubic)."""
    rng = np.random.default_rng(1)
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    for i, im in enumerate(images):
        Image.fromarray(im).save(root / "HR" / f"img_{i}.png")
        Image.fromarray(im[:4, :4]).save(root / "LR_bicubic" / "X2" / f"img_{i}x2.png")
    Image.fromarray(rng.integers(0, 256, grey, dtype=np.uint8)).save(root / "HR" / "z_grey.png")
    return images


def test_a_benchmark_folder_is_the_test_split_with_bicubic_low_resolution_images(tmp_path):
    images = _benchmark(tmp_path / "Set5")
    dm = data.build_datamodule(_cfg("data.scale=3", f"data.test_root={tmp_path / 'Set5'}"))
    dm.setup()
    test = dm.pairs["test"]
    assert len(test) == 3 and len(dm.pairs["val"]) == 2  # the photos still train and validate
    for (lr, hr), im in zip(test, images):
        h, w = im.shape[0] // 3 * 3, im.shape[1] // 3 * 3
        assert hr.shape == (3, h, w) and lr.shape == (3, h // 3, w // 3)
        assert torch.equal(hr, torch.from_numpy(im[:h, :w]).permute(2, 0, 1))
        assert torch.equal(lr, make_pair(im, 3)[0])
    lr, hr = test[2]  # the greyscale image, read as RGB with equal channels
    assert hr.shape == (3, 33, 36) and torch.equal(hr[0], hr[2]) and lr.shape == (3, 11, 12)
    batches = list(dm.test_dataloader())
    assert [tuple(b[1].shape) for b in batches][:1] == [(1, 3, 30, 39)]


def test_a_benchmark_folder_without_hr_images_is_a_sentence_and_nothing_is_written(cli, tmp_path):
    (tmp_path / "Set14").mkdir()
    r = cli("train", *Y_TINY, f"data.test_root={tmp_path / 'Set14'}", f"run.root={tmp_path / 'runs'}")
    assert r.returncode == 2 and not (tmp_path / "runs").exists()
    assert r.stderr.strip().count("\n") == 0
    assert f"data.test_root={tmp_path / 'Set14'} needs the benchmark's high-resolution images in " \
           f"{tmp_path / 'Set14' / 'HR'}" in r.stderr


def test_channels_y_gives_one_channel_batches_and_the_colour_image_alongside():
    dm = data.build_datamodule(_cfg("data.channels=y", "data.patch_size=16"))
    dm.setup()
    assert dm.in_channels == 1 and dm.input_size == (1, 8, 8)
    assert data.model_args(dm) == {"in_channels": 1, "scale": 2}
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape[1:] == (1, 8, 8) and hr.shape[1:] == (1, 16, 16)
    lr_y, hr_y, lr_rgb = next(iter(dm.test_dataloader()))
    rgb_lr, rgb_hr = dm.pairs["test"][0]
    torch.testing.assert_close(lr_y, luma(rgb_lr[None].float() / 255, 0))
    torch.testing.assert_close(hr_y, luma(rgb_hr[None].float() / 255, 0))
    assert torch.equal(lr_rgb, rgb_lr[None].float() / 255)
    rgb_dm = data.build_datamodule(_cfg())
    assert rgb_dm.in_channels == 3 and next(iter(rgb_dm.test_dataloader()))[0].shape[1] == 3


def test_colour_comes_back_from_predicted_y_and_bicubic_chroma():
    photo = load_sample_images().images[1][:64, :96]
    lr, hr = (t[None].float() / 255 for t in make_pair(photo, 2))
    y = ycbcr(hr)[:, :1]
    out = in_colour(y, lr, 2)
    torch.testing.assert_close(rgb(ycbcr(hr)), hr, atol=1e-5, rtol=0)
    torch.testing.assert_close(ycbcr(out)[:, :1], y, atol=1e-5, rtol=0)  # Y kept exactly
    torch.testing.assert_close(ycbcr(out)[:, 1:], bicubic(ycbcr(lr)[:, 1:], 2), atol=1e-5, rtol=0)
    assert psnr(quantize(out), hr).item() > 30  # chroma at half resolution costs little


def test_a_luma_run_trains_a_one_channel_net_scores_y_and_saves_colour_samples(cli, tmp_path):
    _benchmark(tmp_path / "Set5", sizes=((40, 44), (36, 30)), grey=(20, 20))
    r = cli("train", *Y_TINY, f"data.test_root={tmp_path / 'Set5'}", f"run.root={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr
    run = run_dir(tmp_path / "r")
    weights = checkpoint.load(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert weights["net.body.0.weight"].shape[1] == 1 and weights["net.body.4.weight"].shape[0] == 1
    s = json.loads((run / "summary.json").read_text())
    # bicubic of the input Y against the high-resolution Y, on the benchmark images
    dm = data.build_datamodule(C.load([Y_TINY[0]], [*Y_TINY[1:], f"data.test_root={tmp_path / 'Set5'}"]).data)
    dm.setup()
    expected = torch.cat([psnr(luma(quantize(bicubic(lr_y, 2)), 2), luma(hr_y, 2))
                          for lr_y, hr_y, _ in dm.test_dataloader()]).mean()
    assert s["test/psnr_bicubic"] == pytest.approx(expected.item(), abs=1e-4)
    assert s["test/psnr_gain"] == pytest.approx(s["test/psnr"] - s["test/psnr_bicubic"])
    saved = sorted(p.name for p in (run / "samples").iterdir())
    assert saved == [f"{i:03d}_{k}.png" for i in range(3) for k in ("bicubic", "sr")]
    sample = np.asarray(Image.open(run / "samples" / "000_sr.png"))
    assert sample.shape == (40, 44, 3) and (sample[..., 0] != sample[..., 1]).any()  # in colour


@pytest.mark.parametrize("overrides,message", [
    (["data.channels=cmyk"], r"^reslab train: error: data.channels must be one of y, rgb, got 'cmyk'"),
    (["data.test_root=/x", "model.name=cifar_resnet", "data.name=digits"],
     r"^reslab train: error: data.test_root='/x' does not apply to data.name=digits, only to "
     r"photos, sr_folder"),
    (["data.channels=y", "model.name=cifar_resnet", "data.name=digits"],
     r"^reslab train: error: data.channels='y' does not apply to data.name=digits"),
])
def test_bad_channel_and_benchmark_values_exit_2_in_one_sentence(cli, overrides, message, tmp_path):
    r = cli("train", *SR, *overrides, f"run.root={tmp_path}")
    assert r.returncode == 2 and re.search(message, r.stderr.strip())
    assert r.stderr.strip().count("\n") == 0 and not list(tmp_path.iterdir())
