"""Image classification as a LightningModule: the network is passed in, the task owns the loss,
metrics, optimizer and schedule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from reslab.config.schema import OptimConfig
from reslab.metrics import CLASSIFICATION
from reslab.tasks.base import Task

WARM_CHECK_EVERY = 20  # steps between the host reads the ResNet-110 rule needs


class ClassificationTask(Task):
    METRICS = CLASSIFICATION

    def __init__(self, net: nn.Module, num_classes: int, optim_cfg: OptimConfig,
                 channels_last: bool = False, compile: bool | str = False,
                 precision: str = "32-true", precision_why: str = ""):
        super().__init__(net, optim_cfg, channels_last, compile, precision, precision_why)
        self.label_smoothing = optim_cfg.label_smoothing
        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict({
            f"{split}_{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for split in ("val", "test") for k in sorted({1, top5})
        })
        self.top5 = top5

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        wrong = (logits.argmax(1) != y).sum()  # a device tensor: summed there, no host sync
        self.track_step(loss, len(x), wrong)
        if self.schedule is not None and self.schedule.warm:
            self._maybe_end_warmup(wrong, len(x))
        return loss

    def _maybe_end_warmup(self, wrong: torch.Tensor, n: int) -> None:
        # The ResNet-110 rule reads the error on the host, but only every few steps.
        if self.global_step % WARM_CHECK_EVERY == 0 and \
                wrong.item() / n < self.optim_cfg.warmup_until_err:
            self.schedule.warm = False

    def _eval_step(self, split: str, batch) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        for k in sorted({1, self.top5}):
            self.metrics[f"{split}_{k}"].update(logits, y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_epoch_end(self, split: str) -> torch.Tensor:
        err = 1 - self.metrics[f"{split}_1"].compute()
        # torchmetrics already reduced across ranks; sync_dist only tells Lightning so.
        self.log(f"{split}/err", err, prog_bar=True, sync_dist=True)
        if self.top5 != 1:
            top5 = 1 - self.metrics[f"{split}_{self.top5}"].compute()
            self.log(f"{split}/err_top{self.top5}", top5, sync_dist=True)
        for k in sorted({1, self.top5}):
            self.metrics[f"{split}_{k}"].reset()
        return err

    def on_validation_epoch_end(self) -> None:
        self.log_best(self._eval_epoch_end("val"))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
