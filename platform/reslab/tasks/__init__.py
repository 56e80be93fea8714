"""LightningModules ("systems"): they get the network passed in and know nothing of SLURM or Ray."""

from __future__ import annotations

from torch import nn

from reslab.config.schema import Config
from reslab.tasks import fastpath
from reslab.tasks.base import Task
from reslab.tasks.classification import ClassificationTask
from reslab.tasks.super_resolution import SuperResolutionTask

__all__ = ["ClassificationTask", "SuperResolutionTask", "Task", "build_task"]


def build_task(cfg: Config, net: nn.Module, dm) -> Task:
    """The task for the data module's kind of data, with the network passed in."""
    t = cfg.trainer
    precision, why = fastpath.precision(str(t.precision), fastpath.device_type(t.accelerator), net)
    common = {"channels_last": fastpath.use_channels_last(fastpath.parse(t.channels_last), net),
              "compile": fastpath.parse(t.compile), "precision": precision, "precision_why": why}
    if dm.task == "super_resolution":
        return SuperResolutionTask(net, dm.scale, cfg.optim, **common)
    return ClassificationTask(net, dm.num_classes, cfg.optim, **common)
