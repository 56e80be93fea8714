"""Optimizers and learning-rate schedules, as plain functions of the optimizer config."""

from __future__ import annotations

import math

import torch
from torch import nn

from reslab.config.schema import OptimConfig
from reslab.models.catalog import HEAD


def param_groups(net: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Conv/linear weights apart from BN parameters + biases (decayed only if
    `decay_norm_and_bias`, as in the paper's Caffe/Torch setup), and the classifier `fc` apart
    from the backbone (whose lr is scaled by `backbone_lr_mult` when fine-tuning). Frozen
    parameters are left out."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(f"{HEAD}."), p.ndim > 1), []).append(p)
    out = []
    for (head, weight), params in sorted(groups.items()):
        decay = cfg.weight_decay if weight or cfg.decay_norm_and_bias else 0.0
        out.append({"params": params, "weight_decay": decay,
                    "lr": cfg.lr * (1.0 if head else cfg.backbone_lr_mult)})
    return out


def build_optimizer(cfg: OptimConfig, net: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(net, cfg)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class Schedule:
    """lr multiplier as a function of the global step, for `torch.optim.lr_scheduler.LambdaLR`.

    A callable object (not a closure) so LambdaLR saves its attributes in checkpoints — including
    `warm`, the state of the ResNet-110 rule (§4.2: lr 0.01 until training error < 80 %)."""

    def __init__(self, cfg: OptimConfig, total_steps: int | None = None):
        # total_steps may be set later (see Task.on_train_start in tasks/base.py); step 0 of every
        # schedule is independent of it.
        self.kind, self.total = str(cfg.schedule), total_steps  # plain str: saved in checkpoints
        self.milestones, self.gamma = list(cfg.milestones), cfg.gamma
        self.warmup_steps = cfg.warmup_steps
        self.warm_factor = (cfg.warmup_lr / cfg.lr) if cfg.warmup_lr else 1.0
        self.warm = cfg.warmup_lr is not None

    def __call__(self, step: int) -> float:
        f = self._base(step)
        if self.warmup_steps and step < self.warmup_steps:
            f *= (step + 1) / self.warmup_steps
        return f * (self.warm_factor if self.warm else 1.0)

    def _base(self, step: int) -> float:
        t = min(step / self.total, 1.0) if self.total else 0.0
        if self.kind == "paper":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "onecycle":
            # Linear ramp to the peak over the first 25 %, then linear decay to zero.
            return t / 0.25 if t < 0.25 else (1 - t) / 0.75
        return 1.0
