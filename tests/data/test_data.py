"""Data modules on real formats: digits (bundled), CIFAR pickled batches and ImageFolder JPEGs
written here in the on-disk layouts, and the in-memory batched pipeline."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from ondisk import write_cifar, write_imagefolder
from reslab import data
from reslab.config import load as C
from reslab.data.memory import MemoryLoader, random_crop_flip
from support import assert_resumes_mid_epoch


def _cfg(*overrides):
    return C.load([], ["model.name=cifar_resnet", *overrides]).data


def test_digits_split_is_deterministic_and_disjoint():
    dm = data.build_datamodule(_cfg())
    dm.setup()
    sizes = {k: len(v[0]) for k, v in dm.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 359
    dm2 = data.build_datamodule(_cfg())
    dm2.setup()
    assert torch.equal(dm.splits["val"][0], dm2.splits["val"][0])
    # train mean is subtracted per pixel: the training images average to zero
    assert dm.splits["train"][0].mean(0).abs().max() < 1e-5


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_reads_the_real_on_disk_format(tmp_path, hundred):
    write_cifar(tmp_path, hundred=hundred)
    name = "cifar100" if hundred else "cifar10"
    dm = data.build_datamodule(_cfg(f"data.name={name}", f"data.root={tmp_path}", "data.val_size=10"))
    dm.check()
    dm.setup()
    x, y = dm.splits["train"]
    assert x.shape == (90, 3, 32, 32) and x.dtype == torch.float32
    assert len(dm.splits["val"][0]) == 10 and len(dm.splits["test"][0]) == 20
    assert dm.num_classes == (100 if hundred else 10)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (90, 3, 32, 32) or batch[0].shape[1:] == (3, 32, 32)


def test_missing_cifar_says_where_and_how(tmp_path):
    dm = data.build_datamodule(_cfg("data.name=cifar10", f"data.root={tmp_path}"))
    with pytest.raises(data.DataError, match=r"CIFAR10 not found: expected data_batch_1.*"
                                             r"cifar-10-batches-py.*data.download=true"):
        dm.check()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_cifar_file_carrying_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    d = write_cifar(tmp_path)
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    dm = data.build_datamodule(_cfg("data.name=cifar10", f"data.root={tmp_path}"))
    with pytest.raises(data.DataError, match="data_batch_3 is not a CIFAR batch file"):
        dm.setup()
    assert not (tmp_path / "pwned").exists()


def test_imagefolder_reads_jpeg_folders(tmp_path):
    write_imagefolder(tmp_path)
    dm = data.build_datamodule(_cfg("data.name=imagefolder", f"data.root={tmp_path}", "data.image_size=16",
                         "data.batch_size=4", "data.num_workers=0"))
    assert dm.num_classes == 3
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.max() < 3
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (3, 16, 16)


def test_imagefolder_without_folders_is_a_sentence(tmp_path):
    dm = data.build_datamodule(_cfg("data.name=imagefolder", f"data.root={tmp_path}"))
    with pytest.raises(data.DataError, match=r"imagefolder needs class folders in .*train"):
        dm.check()


def _loader(**kw):
    x = torch.arange(100 * 4, dtype=torch.float32).reshape(100, 1, 2, 2)
    y = torch.arange(100)
    return MemoryLoader(x, y, batch_size=16, shuffle=True, pad=1, flip=True, seed=3, **kw)


def _batches(loader):
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_memory_loader_order_is_a_function_of_seed_and_epoch():
    a, b = _loader(), _loader()
    first = _batches(a)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, _batches(b)))
    a.set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in _batches(a)]), torch.cat([y for _, y in first]))
    assert sorted(torch.cat([y for _, y in first]).tolist()) == list(range(100))


def test_memory_loader_resumes_mid_epoch_with_the_same_batches():
    assert_resumes_mid_epoch(_loader, epoch=2, skip=3)


def test_memory_loader_shards_ranks_disjointly_and_equally():
    shards = [torch.cat([y for _, y in _loader(rank=r, world_size=3)]) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert len(set(torch.cat(shards).tolist())) == sum(len(s) for s in shards)


def test_random_crop_takes_shifted_windows_of_the_padded_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad=2, flip=False, gen=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop_flip(x, 0, False, g), x)


def test_cifar_labels_out_of_range_and_truncated_files_are_sentences(tmp_path):
    d = write_cifar(tmp_path)
    with open(d / "test_batch", "wb") as f:  # a label 10 in CIFAR-10
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}, f, protocol=2)
    dm = data.build_datamodule(_cfg("data.name=cifar10", f"data.root={tmp_path}", "data.val_size=10"))
    with pytest.raises(data.DataError, match=r"test labels .* run from 3 to 10, outside 0..9"):
        dm.setup()
    (d / "data_batch_2").write_bytes((d / "data_batch_1").read_bytes()[:500])
    dm = data.build_datamodule(_cfg("data.name=cifar10", f"data.root={tmp_path}", "data.val_size=10"))
    with pytest.raises(data.DataError, match="data_batch_2 is not a CIFAR batch file"):
        dm.setup()


def test_a_download_without_network_is_a_sentence(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    dm = data.build_datamodule(_cfg("data.name=cifar10", f"data.root={tmp_path}", "data.download=true"))
    with pytest.raises(data.DataError, match=r"could not download CIFAR10 .* copy "
                                             r"'cifar-10-batches-py' there"):
        dm.check()
