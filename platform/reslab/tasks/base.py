"""What every reslab task shares: the network passed in (channels_last, torch.compile: see
fastpath.py), the optimizer and schedule, the NaN/Inf guard, throughput, the training metrics,
and the best value of the monitored metric kept as a checkpointed buffer.

Per training step nothing reads the host and Lightning's `self.log` is not called: on a small
network (digits, ~20 ms steps) each call cost ~0.3 ms of Python. The step adds its loss (and
error count) to sums on the device; `train/loss_step` is logged only on the steps Lightning
writes to the loggers (every `trainer.log_every_n_steps`), and the epoch means once, at the
epoch's last batch."""

from __future__ import annotations

import time

import lightning as L
import torch
from torch import nn

from reslab.config.schema import OptimConfig
from reslab.errors import TrainingError
from reslab.metrics import TaskMetrics
from reslab.tasks import fastpath
from reslab.tasks.optim import Schedule, build_optimizer


class Task(L.LightningModule):
    """Subclasses set METRICS, their task's keys (reslab.metrics): the metric `best.ckpt`
    follows and its direction, what summary.json keeps, what the epoch line shows."""

    METRICS: TaskMetrics

    def __init__(self, net: nn.Module, optim_cfg: OptimConfig, channels_last: bool = False,
                 compile: bool | str = False):
        super().__init__()
        self.net, self.optim_cfg = net, optim_cfg
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net.to(memory_format=torch.channels_last)
        compile = fastpath.parse(compile)
        # What the run used, for summary.json (`compile_why` says how `auto` decided).
        self.fast_path = {"channels_last": bool(channels_last), "compile": False,
                          "compile_setting": str(compile).lower(), "compile_why": ""}
        self.probe = fastpath.CompileProbe() if compile == "auto" else None
        self._step_loss: torch.Tensor | None = None
        object.__setattr__(self, "_forward", net)  # not a submodule: checkpoints keep `net.*`
        self.set_compiled(compile is True, "trainer.compile=true" if compile is True else
                          "trainer.compile=false" if compile is False else
                          f"auto: eager until {fastpath.PROBE_STEPS + 1} steps are timed")
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

    def set_compiled(self, use: bool, why: str) -> None:
        if use and not self.fast_path["compile"]:
            object.__setattr__(self, "_forward", torch.compile(self.net))
        self.fast_path.update(compile=use, compile_why=why)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x.contiguous(memory_format=self.memory_format))

    def track_step(self, loss: torch.Tensor, images: int, wrong: torch.Tensor | None = None
                   ) -> None:
        """Per training step, on the device: the epoch's sums (`wrong`: misclassified images)
        and the NaN guard. No host sync and no `self.log` (see on_train_batch_end)."""
        loss = loss.detach()
        self._step_loss = loss
        self._loss_sum.add_(loss, alpha=images)
        if wrong is not None:
            self._wrong_sum = wrong if self._wrong_sum is None else self._wrong_sum + wrong
        self._epoch_images += images
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.global_step, self.first_bad_step)

    def check_finite(self) -> None:
        """Raise before anything saves weights trained on a NaN/Inf loss (one host read)."""
        step = int(self.first_bad_step)
        if step >= 0:
            raise TrainingError(f"the training loss became NaN or Inf at step {step}; stopped "
                                "before saving, so no checkpoint holds the diverged weights "
                                "(lower optim.lr, or set trainer.gradient_clip_val)")

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
        self._loss_sum, self._wrong_sum = torch.zeros((), device=self.device), None

    def on_train_start(self) -> None:
        self.on_train_epoch_start()  # a mid-epoch resume gets no on_train_epoch_start
        # Known only now: asking for it in configure_optimizers would make Lightning build the
        # train loader before a checkpoint restores its position (mid-epoch resume).
        self.schedule.total = max(1, int(self.trainer.estimated_stepping_batches))
        if self.probe:
            self.probe.reset()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.probe:
            self.probe.on_batch_start(self)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._last_batch_end = time.perf_counter()  # epoch time without the validation pass
        t, step = self.trainer, self.global_step
        # Lightning writes step metrics to the loggers on these steps only (should_update_logs).
        if t.log_every_n_steps and step % t.log_every_n_steps == 0 and self._step_loss is not None:
            self.log("train/loss_step", self._step_loss, on_step=True, on_epoch=False,
                     prog_bar=True, batch_size=1)
        if batch_idx + 1 >= t.num_training_batches or 0 < t.max_steps <= step:
            self.log_epoch_means()

    def log_epoch_means(self) -> None:
        """The epoch's (so far: a run stopped by max_steps) mean loss and error, logged once;
        reduced across ranks then (sync_dist), never per step."""
        n = max(1, self._epoch_images)
        self.log("train/loss", self._loss_sum / n, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=1)
        if self._wrong_sum is not None:
            self.log("train/err", self._wrong_sum / n, on_step=False, on_epoch=True,
                     prog_bar=True, sync_dist=True, batch_size=1)

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
