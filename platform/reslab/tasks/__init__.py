"""LightningModules ("systems"): they get the network passed in and know nothing of SLURM or Ray."""

from __future__ import annotations

from reslab.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "build"]


def build(cfg, net, num_classes: int):
    t = cfg.trainer
    return ClassificationTask(net, num_classes, cfg.optim, cfg.optim.label_smoothing,
                              channels_last=t.channels_last, compile=t.compile)
