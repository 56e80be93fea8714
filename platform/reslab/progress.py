"""What a training run shows while it trains: on a terminal with a size, ONE bar for the whole
run (epochs × steps, with the run's ETA) redrawn at least once a second, with each epoch's line
printed above it; anywhere else (a log file, a pipe, `script` without a terminal size, TERM=dumb)
the epoch lines alone, so nothing is lost and no carriage returns fill a log.

The bar costs a clock read per step: metrics are read from the host only when it is redrawn
(every `interval` seconds), never per step."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from lightning.pytorch.callbacks import Callback
from tqdm import tqdm

from reslab.callbacks import EpochLine

INTERVAL_S = 0.5  # redraw period: at least once a second, whatever the step time
FORMAT = ("{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
          "[{elapsed}, ETA {remaining}, {rate_fmt}]{postfix}")
UNBOUNDED = "{desc} {n_fmt} steps [{elapsed}, {rate_fmt}]{postfix}"


def progress_callback(enabled: bool, stream: TextIO | None = None) -> Callback | None:
    """The run's bar on a terminal with a size, else the epoch lines; None when switched off."""
    if not enabled:
        return None
    stream = stream or sys.stdout
    return RunBar(stream) if terminal_columns(stream) > 0 else EpochLine()


def terminal_columns(stream: TextIO) -> int:
    """The width a bar may use on `stream`; 0 when it is no terminal or one without a size (a
    pty under `script` or a container often reports 0 columns) or a dumb one."""
    try:
        if not stream.isatty() or os.environ.get("TERM") == "dumb":
            return 0
        env = os.environ.get("COLUMNS", "")
        return int(env) if env.isdigit() and int(env) > 0 else \
            os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class RunBar(EpochLine):
    """One bar for all of fit: `trainer.estimated_stepping_batches` steps (max_epochs × steps
    per epoch, or max_steps when smaller), the average rate since this attempt started and the
    time left at it. Redrawn from train and validation batches when `interval` seconds passed
    since the last draw (a 10-step epoch still moves the bar); `clock` is injectable for
    tests."""

    def __init__(self, stream: TextIO, clock=time.monotonic, interval: float = INTERVAL_S,
                 columns=terminal_columns):
        self.stream, self.clock, self.interval, self.columns = stream, clock, interval, columns
        self.last_len, self.drawn_at, self.active = 0, -float("inf"), False

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.active = trainer.is_global_zero
        total = trainer.estimated_stepping_batches
        self.total = int(total) if total != float("inf") else None
        self.initial = self.done = trainer.global_step  # a resumed attempt's rate starts here
        self.started = self.clock()
        self.draw(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done = trainer.global_step
        if self.active and self.clock() - self.drawn_at >= self.interval:
            self.draw(trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if self.active and self.clock() - self.drawn_at >= self.interval:  # only inside fit
            self.draw(trainer, pl_module, "validating")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.active:  # the epoch's line stays in the scrollback, the bar below it
            self.clear()
            self.stream.write(self.line(trainer, pl_module) + "\n")
            self.draw(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.active:
            self.done = trainer.global_step
            self.draw(trainer, pl_module)
            self.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.active:
            self.close()

    def draw(self, trainer, pl_module, phase: str = "") -> None:
        self.drawn_at = self.clock()
        columns = self.columns(self.stream)
        text = tqdm.format_meter(
            self.done, self.total, self.drawn_at - self.started, ncols=max(columns - 1, 0) or None,
            prefix=" ".join(filter(None, (epoch_of(trainer), phase))),
            unit="step", postfix=self.metrics(trainer, pl_module), initial=self.initial,
            bar_format=FORMAT if self.total else UNBOUNDED, ascii=not _utf8(self.stream))
        self.stream.write("\r" + text.ljust(self.last_len))
        self.stream.flush()
        self.last_len = len(text)

    def metrics(self, trainer, pl_module) -> str:
        """The latest step's loss and the monitored metric (the epoch lines carry the rest),
        read from the device once per draw."""
        m = trainer.callback_metrics
        keys = ("train/loss_step", pl_module.METRICS.monitor[0])
        return " ".join(f"{k.removesuffix('_step')}={float(m[k]):.4f}" for k in keys if k in m)

    def clear(self) -> None:
        self.stream.write("\r" + " " * self.last_len + "\r")
        self.last_len = 0

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
        self.active = False


def epoch_of(trainer) -> str:
    """`epoch 3/10` (the epoch in progress; the last one once fit has ended)."""
    last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    now = trainer.current_epoch + 1
    return f"epoch {min(now, last)}/{last}" if last else f"epoch {now}"


def _utf8(stream: TextIO) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"
