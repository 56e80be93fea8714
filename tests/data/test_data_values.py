"""Values the config's domains allow, at the edges the data code meets: one-image batches, the
tiniest images, a set larger than memory, a validation split that leaves two training images."""

from __future__ import annotations

import pytest
import torch

from reslab import data
from reslab.config.load import load
from reslab.errors import UserError
from reslab.run.build import build_net_and_data
from support import TINY


@pytest.mark.parametrize("overrides", [
    ["model.name=resnet18", "model.depth=null", "data.name=synthetic", "data.size=64"],
    ["data.name=synthetic", "data.size=64", "data.shape=[3,1,1]"],
])
def test_one_image_batches_where_a_feature_map_is_1x1_are_refused(overrides):
    with pytest.raises(UserError, match=r"data.batch_size=1 gives batches of one image, which "
                                        r"BatchNorm cannot normalise .* use data.batch_size=2"):
        build_net_and_data(load([], [*TINY, *overrides, "data.batch_size=1"]))


def test_one_image_batches_train_where_every_feature_map_keeps_pixels():
    """cifar_resnet's last stage is 2x2 on 8-pixel digits: one image still has 4 values."""
    built = build_net_and_data(load([], [*TINY, "data.batch_size=1"]))
    x, _ = next(iter(built.datamodule.train_dataloader()))
    assert x.shape[0] == 1
    built.net.train()(x).sum().backward()


@pytest.mark.parametrize("shape", [[1, 1, 1], [3, 1, 1], [2, 3, 5]])
@pytest.mark.parametrize("model", ["cifar_resnet", "resnet18"])
def test_the_smallest_synthetic_images_train(shape, model):
    cfg = load([], [*TINY, f"model.name={model}", "model.depth=null" if model != "cifar_resnet"
                    else "model.depth=8", "data.name=synthetic", "data.size=40",
                    f"data.shape=[{','.join(map(str, shape))}]", "data.batch_size=16"])
    built = build_net_and_data(cfg)
    for x, y in built.datamodule.train_dataloader():
        assert x.shape[1:] == tuple(shape) and len(x) >= 2
        loss = torch.nn.functional.cross_entropy(built.net.train()(x), y)
        assert torch.isfinite(loss)
        loss.backward()


def test_a_synthetic_set_larger_than_memory_is_refused_before_allocating():
    dm = data.build_datamodule(load([], ["data.name=synthetic", "data.size=1000000",
                              "data.shape=[3,4096,4096]"]).data)
    with pytest.raises(data.DataError, match=r"data.shape=\[3, 4096, 4096\] with "
                                             r"data.size=1000000 needs 421,875 GiB of memory"):
        dm.setup()


@pytest.mark.parametrize("val_size, train_images", [(1436, 2), (0.9986, 2), (0.5, 719)])
def test_a_validation_split_may_leave_two_training_images(val_size, train_images):
    built = build_net_and_data(load([], [*TINY, f"data.val_size={val_size}"]))
    assert built.datamodule.sizes()["train"] == train_images
