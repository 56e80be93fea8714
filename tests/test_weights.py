"""Pretrained weights: torchvision's real loading code on a pre-filled cache (offline), reslab
runs as a source, refusal of weights that do not fit, freezing and per-part learning rates."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

from reslab import tasks
from reslab.config.load import load
from reslab.errors import UserError
from reslab.run import train, weights
from reslab.run.build import build_net_and_data
from reslab.tasks.optim import build_optimizer
from support import ROOT, TINY

QUICKSTART = ROOT / "configs/quickstart.yaml"


def test_torchvision_weights_load_from_the_cache_with_the_classifier_replaced(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tv = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = weights.cache_path(tv)
    assert path.parent == tmp_path / "torch/hub/checkpoints"
    path.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, path)
    for split in ("train", "val"):  # an ImageNet-layout folder with 7 classes, an image each
        for c in range(7):
            folder = tmp_path / "images" / split / f"class{c}"
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8), (c * 30, 0, 0)).save(folder / "0.png")
    cfg = load([], ["model.name=resnet18", "model.depth=null", "model.shortcut=null",
                    "model.weights=IMAGENET1K_V1", "data.name=imagefolder",
                    f"data.root={tmp_path / 'images'}", "data.image_size=160"])
    built = build_net_and_data(cfg)
    for k, v in built.net.state_dict().items():
        if k.startswith("fc."):
            assert v.shape[0] == 7
        else:
            assert torch.equal(v, reference[k]), k
    # The inputs follow the weights' own normalisation and resize (not 8/7 x the 160 crop).
    dm = built.datamodule
    assert list(dm.mean) == [0.485, 0.456, 0.406] and dm.resize_size == 256


def test_missing_cache_without_network_is_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(weights.socket, "create_connection",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no route")))
    cfg = load([], ["model.name=resnet50", "model.depth=null", "model.shortcut=null",
                    "model.weights=IMAGENET1K_V2"])
    with pytest.raises(UserError, match=r"not in the cache .*resnet50-11ad3fa6.pth"):
        build_net_and_data(cfg)


def test_unknown_torchvision_name_lists_the_choices():
    with pytest.raises(UserError, match="choose from IMAGENET1K_V1, IMAGENET1K_V2"):
        build_net_and_data(load([], ["model.name=resnet50", "model.depth=null",
                        "model.weights=IMAGENET1K_V9"]))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    summary = train.fit(load([QUICKSTART], [*TINY, "trainer.max_epochs=1",
                                            "logger.wandb.mode=disabled", "run.test=false",
                                            f"run.root={root}", "run.name=src"]))
    assert summary["status"] == "completed"
    run, = root.glob("src/*")
    return run


def test_a_run_directory_is_a_weights_source(digits_run):
    cfg = load([], [*TINY, f"model.weights={digits_run}", "data.classes=[5,6,7]"])
    net = build_net_and_data(cfg).net
    ckpt = torch.load(digits_run / "checkpoints/best.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(net.conv1.weight, ckpt["net.conv1.weight"])
    assert net.fc.out_features == 3  # replaced: 10 classes in the weights, 3 in the data


def test_a_mismatched_architecture_is_refused_naming_the_layers(digits_run, cli, tmp_path):
    cfg = load([], ["model.name=cifar_resnet", "model.depth=14", f"model.weights={digits_run}"])
    with pytest.raises(UserError, match=r"does not fit model cifar_resnet: missing in the "
                                        r"weights: layer1\.1\.conv1\.weight"):
        build_net_and_data(cfg)
    r = cli("train", "model.name=cifar_resnet", "model.depth=14", f"model.weights={digits_run}",
            f"run.root={tmp_path}")
    assert r.returncode == 2 and "layer1.1.conv1.weight" in r.stderr
    assert not any(tmp_path.iterdir()), "a refused run wrote files"


@pytest.mark.parametrize("level,trainable", [("backbone", {"fc"}), ("layer1", {"layer2", "layer3", "fc"}),
                                             ("stem", {"layer1", "layer2", "layer3", "fc"})])
def test_freezing_stops_gradients_and_keeps_frozen_bn_in_eval(level, trainable):
    cfg = load([], [*TINY, f"model.freeze={level}", "optim.backbone_lr_mult=0.1"])
    built = build_net_and_data(cfg)
    net = built.net
    task = tasks.build_task(cfg, net, built.datamodule).train()
    learning = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert learning == trainable
    assert not net.bn1.training and (net.layer3[0].bn1.training == ("layer3" in trainable))
    groups = build_optimizer(cfg.optim, net).param_groups
    fc = {id(p) for p in net.fc.parameters()}
    for g in groups:
        is_head = all(id(p) in fc for p in g["params"])
        assert g["lr"] == pytest.approx(cfg.optim.lr * (1 if is_head else 0.1))
    assert task.net is net


def test_fine_tuning_beats_training_from_scratch_on_the_embedded_data(tmp_path):
    """Digits 0-4 -> 5-9: after the same 3 epochs, starting from the pretrained ResNet-20 gives
    a lower validation error than starting from scratch, frozen and unfrozen."""
    common = ["logger.wandb.mode=disabled", f"run.root={tmp_path}"]
    pre = train.fit(load([ROOT / "configs/experiment/pretrain_digits_0to4.yaml"],
                         ["trainer.max_epochs=10", "run.test=false", *common]))
    assert pre["status"] == "completed"
    err = {}
    for name, extra in (("scratch", ["model.weights=none"]), ("finetune", []),
                        ("frozen", ["model.freeze=backbone"])):
        summary = train.fit(load([ROOT / "configs/experiment/transfer_digits.yaml"],
                                 [*common, f"model.weights={tmp_path}/digits_0to4",
                                  f"run.name={name}", *extra]))
        assert summary["status"] == "completed"
        err[name] = summary["val/err_best"]
    assert err["finetune"] < err["scratch"] and err["frozen"] < err["scratch"], err
