"""What every reslab task shares: the network passed in (channels_last, torch.compile), the
optimizer and schedule, the NaN/Inf guard, throughput, and the best value of the monitored
metric kept as a checkpointed buffer."""

from __future__ import annotations

import time

import lightning as L
import torch
from torch import nn

from reslab.config.schema import OptimConfig
from reslab.errors import TrainingError
from reslab.metrics import TaskMetrics
from reslab.tasks.optim import Schedule, build_optimizer


class Task(L.LightningModule):
    """Subclasses set METRICS, their task's keys (reslab.metrics): the metric `best.ckpt`
    follows and its direction, what summary.json keeps, what the epoch line shows."""

    METRICS: TaskMetrics

    def __init__(self, net: nn.Module, optim_cfg: OptimConfig, channels_last: bool = False,
                 compile: bool = False):
        super().__init__()
        self.net, self.optim_cfg = net, optim_cfg
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net.to(memory_format=torch.channels_last)
        # Not a registered submodule: checkpoints keep the plain `net.*` keys.
        object.__setattr__(self, "_forward", torch.compile(net) if compile else net)
        metric, mode = self.METRICS.monitor
        # e.g. val_err_best: the best validation value so far, saved in checkpoints.
        self.register_buffer(self.best_name, torch.tensor(float("inf" if mode == "min" else "-inf")))
        # First step whose loss was NaN/Inf (-1: none), kept on the device: no sync per step.
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)
        self.schedule: Schedule | None = None
        self._epoch_start, self._last_batch_end, self._epoch_images = 0.0, 0.0, 0
        self.throughput: list[float] = []  # images (patches) per second of each training epoch

    @property
    def best_name(self) -> str:
        return f"{self.METRICS.monitor[0]}_best".replace("/", "_")

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

    def track_step(self, loss: torch.Tensor, images: int) -> None:
        """Per training step: the loss logs (device tensors, no host sync) and the NaN guard."""
        # Epoch means are reduced across ranks once per epoch (sync_dist), never per step.
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        self._epoch_images += images
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.global_step, self.first_bad_step)

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

    def log_best(self, value: torch.Tensor) -> None:
        """Keep and log the best monitored value (`val/err_best`, `val/psnr_best`)."""
        if self.trainer.sanity_checking:
            return
        best = getattr(self, self.best_name)
        pick = torch.minimum if self.METRICS.monitor[1] == "min" else torch.maximum
        setattr(self, self.best_name, pick(best, value.to(best)))
        self.log(f"{self.METRICS.monitor[0]}_best", getattr(self, self.best_name), sync_dist=True)

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

    def configure_optimizers(self):
        opt = build_optimizer(self.optim_cfg, self.net)
        self.schedule = Schedule(self.optim_cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
