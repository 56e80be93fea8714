"""What every reslab task shares: the network passed in (channels_last, torch.compile: see
fastpath.py), the optimizer and schedule, the NaN/Inf guard, throughput, the training metrics,
and the best value of the monitored metric kept as a checkpointed buffer.

Per training step nothing reads the host, no tensor is computed for bookkeeping and Lightning's
`self.log` is not called: on a small network (digits, ~20 ms steps) each `self.log` cost ~0.3 ms
of Python, and device-side running sums with a NaN guard ~70 µs. The step appends its loss (and
error count) to the epoch's lists (EpochSteps); `train/loss_step` is logged only on the steps
Lightning writes to the loggers (every `trainer.log_every_n_steps`), and the epoch means once, at
the epoch's last batch."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from reslab.compat import HOOK_NAME_ATTR, is_batchnorm
from reslab.config.schema import OptimConfig
from reslab.errors import TrainingError
from reslab.metrics import TaskMetrics
from reslab.tasks import fastpath
from reslab.tasks.optim import Schedule, build_optimizer


class EpochSteps:
    """One training epoch's steps, as plain lists: each step's loss (and misclassified count) as
    the device tensor the step made, and its batch size. Appending runs no tensor op (and, being
    no Module, no Module.__setattr__); the means and the NaN check are computed when asked. Every
    FOLD steps the lists are folded into sums (one host read, for the NaN check), so a long epoch
    holds at most FOLD tensors."""

    FOLD = 4096

    def __init__(self, first_step: int):
        self.first_step, self.start, self.end = first_step, time.perf_counter(), 0.0
        self.losses: list[torch.Tensor] = []
        self.wrongs: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.images = self.folded = 0  # folded: the steps already in the sums below
        self.loss_sum: torch.Tensor | None = None
        self.wrong_sum: torch.Tensor | None = None
        self.bad: int | None = None  # the first NaN/Inf step among the folded ones
        self.last: torch.Tensor | None = None  # the latest step's loss
        self.earlier = 0  # images of the steps before a mid-epoch resume (in the sums, untimed)

    def add(self, loss: torch.Tensor, images: int, wrong: torch.Tensor | None) -> None:
        self.last = loss
        self.losses.append(loss)
        self.sizes.append(images)
        self.images += images
        if wrong is not None:
            self.wrongs.append(wrong)
        if len(self.losses) >= self.FOLD:
            self.bad = self.first_bad()
            self.loss_sum, self.wrong_sum = self._sums()
            self.folded += len(self.losses)
            self.losses, self.wrongs, self.sizes = [], [], []

    def _sums(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The image-weighted loss sum and the misclassified count, folded steps included."""
        loss, wrong = self.loss_sum, self.wrong_sum
        if self.losses:
            losses = torch.stack(self.losses).float()
            part = (losses * torch.tensor(self.sizes, device=losses.device)).sum()
            loss = part if loss is None else loss + part
        if self.wrongs:
            part = torch.stack(self.wrongs).sum()
            wrong = part if wrong is None else wrong + part
        return loss, wrong

    def means(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image-weighted mean loss and the error rate so far (device tensors)."""
        loss, wrong = self._sums()
        n = max(1, self.images + self.earlier)
        return loss / n, wrong / n if wrong is not None else None

    def state(self, epoch: int) -> dict:
        """What a checkpoint keeps of the epoch so far: its sums (tensors and ints, loadable
        with weights_only), so a run resumed mid-epoch logs the whole epoch's means."""
        loss, wrong = self._sums()
        return {"epoch": epoch, "first_step": self.first_step, "bad": self.first_bad(),
                "steps": self.folded + len(self.losses), "images": self.images + self.earlier,
                "loss_sum": loss, "wrong_sum": wrong}

    @classmethod
    def resumed(cls, state: dict | None, epoch: int, step: int) -> EpochSteps:
        """The steps of the epoch in progress at `step`: a checkpoint's `state` when it was
        saved in this epoch at this step (a mid-epoch resume), else none yet."""
        steps = cls(step)
        if state and state["epoch"] == epoch and state["first_step"] + state["steps"] == step:
            steps.first_step, steps.folded, steps.earlier = (state["first_step"], state["steps"],
                                                             state["images"])
            steps.loss_sum, steps.wrong_sum, steps.bad = (state["loss_sum"], state["wrong_sum"],
                                                          state["bad"])
        return steps

    def first_bad(self) -> int | None:
        """The first step whose loss was NaN or Inf (one host read), or None."""
        if self.bad is not None or not self.losses:
            return self.bad
        bad = (~torch.isfinite(torch.stack(self.losses))).nonzero()
        return self.first_step + self.folded + int(bad[0]) if len(bad) else None


class Task(L.LightningModule):
    """Subclasses set METRICS, their task's keys (reslab.metrics): the metric `best.ckpt`
    follows and its direction, what summary.json keeps, what the epoch line shows."""

    METRICS: TaskMetrics

    def __init__(self, net: nn.Module, optim_cfg: OptimConfig, channels_last: bool = False,
                 compile: bool | str = False, precision: str = "32-true", precision_why: str = ""):
        super().__init__()
        self.net, self.optim_cfg = net, optim_cfg
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net.to(memory_format=torch.channels_last)
        compile = fastpath.parse(compile)
        # What the run used, for summary.json (`*_why` says how `auto` decided); the Trainer
        # takes its precision from here (fastpath.precision resolved it).
        self.fast_path = {"channels_last": bool(channels_last), "compile": False,
                          "compile_setting": str(compile).lower(), "compile_why": "",
                          "precision": precision, "precision_why": precision_why}
        self.probe = fastpath.CompileProbe() if compile == "auto" else None
        object.__setattr__(self, "_forward", net)  # not a submodule: checkpoints keep `net.*`
        self.set_compiled(compile is True, "trainer.compile=true" if compile is True else
                          "trainer.compile=false" if compile is False else
                          f"auto: eager until {fastpath.PROBE_STEPS + 1} steps are timed")
        metric, mode = self.METRICS.monitor
        # e.g. val_err_best: the best validation value so far, saved in checkpoints.
        self.register_buffer(self.best_name, torch.tensor(float("inf" if mode == "min" else "-inf")))
        self.schedule: Schedule | None = None
        # Where a test writes sample outputs (the run directory's samples/): the run that tests
        # sets it; the task knows no run directory's layout (reslab.tracking.rundir's).
        self.samples: Path | None = None
        self.steps = EpochSteps(0)
        self.resumed_steps: dict | None = None  # the checkpoint's epoch so far (EpochSteps.state)
        self._first_bad: int | None = None  # of an earlier epoch: its steps are gone
        self.throughput: list[float] = []  # images (patches) per second of each training epoch

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` before and after every hook it calls (~30 times a
        # step); it is never a tensor or a module, so Module.__setattr__'s checks are skipped
        # (~80 µs a step on digits; Lightning's own _ResultMetric does the same).
        if name == HOOK_NAME_ATTR:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def best_name(self) -> str:
        return f"{self.METRICS.monitor[0]}_best".replace("/", "_")

    def train(self, mode: bool = True):
        """Frozen BatchNorm layers (no trainable parameters) keep their running statistics."""
        super().train(mode)
        if mode:
            for m in self.net.modules():
                if is_batchnorm(m) and not any(
                        p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def set_compiled(self, use: bool, why: str) -> None:
        if use and not self.fast_path["compile"]:
            object.__setattr__(self, "_forward", torch.compile(self.net))
        self.fast_path.update(compile=use, compile_why=why)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x.contiguous(memory_format=self.memory_format))

    def wrap_forward(self, wrap) -> None:
        """Have `forward` call `wrap(f)` instead of `f`, the eager or compiled network: the
        bench observes every call this way."""
        object.__setattr__(self, "_forward", wrap(self._forward))

    def track_step(self, loss: torch.Tensor, images: int, wrong: torch.Tensor | None = None
                   ) -> None:
        """Per training step: its loss (`wrong`: misclassified images) into the epoch's lists.
        No host sync, no tensor op and no `self.log` (see on_train_batch_end)."""
        self.steps.add(loss.detach(), images, wrong)

    def check_finite(self) -> None:
        """Raise before anything saves weights trained on a NaN/Inf loss (one host read)."""
        step = self._first_bad if self._first_bad is not None else self.steps.first_bad()
        if step is not None:
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
        if self._first_bad is None:
            self._first_bad = self.steps.first_bad()
        self.steps = EpochSteps.resumed(self.resumed_steps, self.current_epoch, self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["epoch_steps"] = self.steps.state(self.current_epoch)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.resumed_steps = checkpoint.get("epoch_steps")

    def on_train_start(self) -> None:
        # Lightning (>= 2.2) no longer calls train() when fit starts: without this, frozen
        # BatchNorm layers (model.freeze) trained their running statistics in a linear probe.
        self.train()
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
        steps = self.steps
        steps.end = time.perf_counter()  # epoch time without the validation pass
        t = self.trainer
        step, every = t.global_step, t.log_every_n_steps
        # Lightning writes step metrics to the loggers on these steps only (its should_update_logs:
        # one optimizer step a batch, as reslab has no gradient accumulation).
        if every and step % every == 0 and steps.last is not None:
            self.log("train/loss_step", steps.last, on_step=True, on_epoch=False,
                     prog_bar=True, batch_size=1)
        if batch_idx + 1 >= t.num_training_batches or 0 < t.max_steps <= step:
            self.log_epoch_means()

    def log_epoch_means(self) -> None:
        """The epoch's (so far: a run stopped by max_steps) mean loss and error, logged once;
        reduced across ranks then (sync_dist), never per step."""
        if not self.steps.images:
            return
        loss, err = self.steps.means()
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        if err is not None:
            self.log("train/err", err, on_step=False, on_epoch=True,
                     prog_bar=True, sync_dist=True, batch_size=1)

    def on_train_epoch_end(self) -> None:
        steps = self.steps
        elapsed = steps.end - steps.start
        if elapsed > 0 and steps.images:
            rate = steps.images * self.trainer.world_size / elapsed
            self.throughput.append(rate)
            self.log("train/images_per_s", rate, sync_dist=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)

    def configure_optimizers(self):
        opt = build_optimizer(self.optim_cfg, self.net)
        self.schedule = Schedule(self.optim_cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
