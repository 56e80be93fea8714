"""From a validated config to the objects a run trains: the DataModule and the network (with
pretrained weights loaded and stages frozen). The config is read, never changed: statistics
that pretrained weights bring (their input normalisation) go to the DataModule as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reslab import data, models
from reslab.config.schema import Config
from reslab.errors import UserError
from reslab.models import ModelInfo
from reslab.run import weights


@dataclass(frozen=True)
class Built:
    datamodule: Any          # a LightningDataModule
    net: nn.Module
    info: ModelInfo


def build_net_and_data(cfg: Config, device: str | None = None, open_data: bool = True,
                       here: bool = True) -> Built:
    """Everything that can refuse the config — the accelerator and precision, data present and
    readable (opened: labels, sizes, splits), model buildable, weights that fit — happens here,
    before any file of the run is written. `here`: it runs on this machine (not a job's nodes)."""
    check_device(cfg, torch.cuda.is_available() if here else None)
    source = weights.resolve(cfg)
    dm = data.build_datamodule(cfg.data, cfg.seed, data_stats(cfg, source))
    dm.check()
    if open_data:
        dm.setup("fit")
        t = cfg.trainer
        data.check_steps(dm.sizes(), cfg.data, t.devices * t.num_nodes, t.limit_train_batches)
    info = models.info(cfg.model.name)
    with torch.device(device or "cpu"):
        net = models.build_model(cfg.model.name, **data.model_args(dm), **model_kwargs(cfg))
    check_one_image_batches(cfg, dm)
    if cfg.diagnostics.every_n_steps and not hasattr(net, "blocks"):
        raise UserError(f"diagnostics.every_n_steps needs a model with residual blocks (a ResNet "
                        f"or edsr), got model.name={cfg.model.name}; set it to 0")
    weights.load_into(net, source, info)
    weights.freeze(net, str(cfg.model.freeze), info)
    return Built(dm, net, info)


def check_device(cfg: Config, gpus: bool | None, where: str = "this machine") -> None:
    """The accelerator and precision exist where the run trains: `gpus` says whether `where`
    has a CUDA GPU, None where that is not known here (a SLURM job's nodes, whose GPUs only an
    explicit trainer.accelerator=cpu rules out)."""
    t = cfg.trainer
    if gpus is False and t.accelerator in ("gpu", "cuda"):
        raise UserError(f"trainer.accelerator={t.accelerator} but {where} has no CUDA GPU; use "
                        "trainer.accelerator=auto or cpu")
    if t.precision == "16-mixed" and (t.accelerator == "cpu" or gpus is False):
        # Lightning would train bf16-mixed instead
        raise UserError("trainer.precision=16-mixed needs a CUDA GPU (PyTorch has no fp16 "
                        "autocast for training on the CPU); use auto, bf16-mixed or 32-true")


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def check_one_image_batches(cfg: Config, dm) -> None:
    """data.batch_size=1 trains on batches of one image, which BatchNorm cannot normalise where a
    feature map has shrunk to 1x1 (ResNet-18's layer4 on 32-pixel images fails at the first
    step): found by a forward pass on PyTorch's meta device (shapes only, no memory)."""
    if cfg.data.batch_size > 1:
        return
    with torch.device("meta"):
        net = models.build_model(cfg.model.name, **data.model_args(dm), **model_kwargs(cfg))
        values = []  # per channel, of each BatchNorm's input for one image
        for m in net.modules():
            if isinstance(m, BATCH_NORMS):
                m.register_forward_pre_hook(lambda _, args: values.append(args[0][0, 0].numel()))
        net.eval()(torch.empty(1, *dm.input_size))
    if values and min(values) == 1:
        size = "x".join(map(str, dm.input_size[1:]))
        raise UserError(f"data.batch_size=1 gives batches of one image, which BatchNorm cannot "
                        f"normalise where model {cfg.model.name}'s feature maps shrink to 1x1 "
                        f"({size} inputs); use data.batch_size=2 or more")


def check(cfg: Config) -> None:
    """`build_net_and_data` without the cost where it can: no data decoded, the network on
    PyTorch's meta device (shapes only) unless weights must be loaded into it. For `reslab submit` on a login
    node, whose GPUs (if any) are not the job's."""
    build_net_and_data(cfg, device="cpu" if cfg.model.weights != "none" else "meta",
                       open_data=False, here=False)


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """The keyword arguments the model builder takes from config (None = the model's default)."""
    options = models.info(cfg.model.name).options
    return {k: v for k in options if (v := getattr(cfg.model, k)) is not None}


def data_stats(cfg: Config, source: weights.Source) -> dict | None:
    """Image folders read with torchvision weights get the weights' own normalisation and
    resize (the config's data.mean/std/resize_size win where set); in-memory sets normalise
    from their own training images."""
    return source.preprocessing() if cfg.data.name == "imagefolder" else None
