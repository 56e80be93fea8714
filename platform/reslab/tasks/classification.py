"""Image classification as a LightningModule: the network is passed in, the task owns the loss,
metrics, optimizer and schedule."""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from reslab.errors import TrainingError
from reslab.tasks.optim import Schedule, build_optimizer

WARM_CHECK_EVERY = 20  # steps between the host reads the ResNet-110 rule needs


class ClassificationTask(L.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optim_cfg, label_smoothing: float = 0.0,
                 channels_last: bool = False, compile: bool = False):
        super().__init__()
        self.net, self.optim_cfg = net, optim_cfg
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net.to(memory_format=torch.channels_last)
        # Not a registered submodule: checkpoints keep the plain `net.*` keys.
        object.__setattr__(self, "_forward", torch.compile(net) if compile else net)
        self.label_smoothing = label_smoothing
        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict({
            f"{split}_{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for split in ("val", "test") for k in sorted({1, top5})
        })
        self.top5 = top5
        self.register_buffer("val_err_best", torch.tensor(float("inf")))
        # First step whose loss was NaN/Inf (-1: none), kept on the device: no sync per step.
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)
        self.schedule: Schedule | None = None
        self._epoch_start, self._last_batch_end, self._epoch_images = 0.0, 0.0, 0
        self.throughput: list[float] = []  # images/s of each training epoch (all ranks)

    def train(self, mode: bool = True):
        """Frozen BatchNorm layers (no trainable parameters) keep their running statistics."""
        super().train(mode)
        if mode:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                        p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        err = (logits.argmax(1) != y).float().mean()
        # Tensors, not floats: Lightning averages them on the device; no host sync per step.
        # Epoch means are reduced across ranks once per epoch (sync_dist), never per step.
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/err", err, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        self._epoch_images += len(x)
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.global_step, self.first_bad_step)
        if self.schedule is not None and self.schedule.warm:
            self._maybe_end_warmup(err)
        return loss

    def check_finite(self) -> None:
        """Raise before anything saves weights trained on a NaN/Inf loss (one host read)."""
        step = int(self.first_bad_step)
        if step >= 0:
            raise TrainingError(f"the training loss became NaN or Inf at step {step}; stopped "
                                "before saving, so checkpoints/last.ckpt holds the last finite "
                                "weights (lower optim.lr, or set trainer.gradient_clip_val)")

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.check_finite()  # ModelCheckpoint saves at the end of this validation

    def _maybe_end_warmup(self, err: torch.Tensor) -> None:
        # The ResNet-110 rule reads the error on the host, but only every few steps.
        if self.global_step % WARM_CHECK_EVERY == 0 and err.item() < self.optim_cfg.warmup_until_err:
            self.schedule.warm = False

    def on_train_epoch_start(self) -> None:
        self._epoch_start, self._epoch_images = time.perf_counter(), 0

    def on_train_start(self) -> None:
        self.on_train_epoch_start()  # a mid-epoch resume gets no on_train_epoch_start
        # Known only now: asking for it in configure_optimizers would make Lightning build the
        # train loader before a checkpoint restores its position (mid-epoch resume).
        self.schedule.total = max(1, int(self.trainer.estimated_stepping_batches))

    def on_train_batch_end(self, *args) -> None:
        self._last_batch_end = time.perf_counter()  # epoch time without the validation pass

    def on_train_epoch_end(self) -> None:
        elapsed = self._last_batch_end - self._epoch_start
        if elapsed > 0 and self._epoch_images:
            rate = self._epoch_images * self.trainer.world_size / elapsed
            self.throughput.append(rate)
            self.log("train/images_per_s", rate, sync_dist=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)

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
        err = self._eval_epoch_end("val")
        if not self.trainer.sanity_checking:
            self.val_err_best = torch.minimum(self.val_err_best, err.to(self.val_err_best))
            self.log("val/err_best", self.val_err_best, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        opt = build_optimizer(self.optim_cfg, self.net)
        self.schedule = Schedule(self.optim_cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
