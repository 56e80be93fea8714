"""What a training run shows while it trains: on a terminal with a size, ONE bar for the whole
run (epochs × steps, with the run's ETA) redrawn at least once a second, with each epoch's line
printed above it; anywhere else (a log file, a pipe, `script` without a terminal size, TERM=dumb)
the epoch lines alone, so nothing is lost and no carriage returns fill a log.

Both lines fit the terminal's width (read at every draw, so a resize is followed): parts are
dropped whole, least useful first, rather than squeezing the bar or letting a line wrap. The
monitored metric (val/err, val/psnr) and the ETA always stay. The bar shows the latest step's
loss as `loss_step` (metrics.csv's `train/loss_step`); the epoch line shows the epoch's mean as
`train/loss`.

The bar costs a clock read per step: metrics are read from the host only when it is redrawn
(every `interval` seconds), never per step."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from lightning.pytorch.callbacks import Callback
from tqdm.std import Bar, tqdm

from reslab.run.callbacks import EpochLine

INTERVAL_S = 0.5  # redraw period: at least once a second, whatever the step time
BAR_MIN, BAR_MAX = 16, 40  # the bar's own width: parts are dropped before it gets narrower
KEEP = 0  # the priority of a part that is never dropped


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

    def line(self, trainer, pl_module) -> str:
        """The epoch line, fitted: the best-so-far values go first, then the epoch's time,
        then the metrics from the last; epoch, step and the monitored metric stay."""
        parts = self.parts(trainer, pl_module)
        monitor = pl_module.METRICS.monitor[0]
        order = [k for k in parts if k not in ("epoch", "step", monitor, "time")]
        rank = {k: 1 + (len(order) + 1 if k.endswith("_best") else i) for i, k in enumerate(order)}
        rank["time"] = 1 + len(order)
        return " ".join(fit([(rank.get(k, KEEP), text) for k, text in parts.items()],
                            self.width()))

    def draw(self, trainer, pl_module, phase: str = "") -> None:
        self.drawn_at = self.clock()
        text = self.bar_line(trainer, pl_module, phase)[:self.width()]  # a tiny terminal
        self.stream.write("\r" + text.ljust(self.last_len))
        self.stream.flush()
        self.last_len = len(text)

    def bar_line(self, trainer, pl_module, phase: str) -> str:
        """`epoch 3/30 validating  45%|█████      | 634/1410 01:23 ETA 02:10 23.8 step/s
        loss_step=0.1234 val/err=0.0567`, without the parts that do not fit (dropped in the
        order count, rate, elapsed, phase, loss_step, percentage)."""
        elapsed = self.drawn_at - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        loss, monitor = self.metrics(trainer, pl_module)
        if not self.total:  # max_epochs=-1 and no max_steps: no end to show
            parts = [(KEEP, epoch_of(trainer)), (3, phase), (KEEP, f"{self.done} steps"),
                     (4, tqdm.format_interval(elapsed)), (5, per_second(rate)), (2, loss),
                     (KEEP, monitor)]
            return " ".join(fit(parts, self.width()))
        left = (self.total - self.done) / rate if rate > 0 else None
        parts = [(KEEP, epoch_of(trainer)), (3, phase),
                 (1, f"{100 * self.done / self.total:3.0f}%"), (KEEP, BAR),
                 (6, f"{self.done}/{self.total}"), (4, tqdm.format_interval(elapsed)),
                 (KEEP, "ETA " + (tqdm.format_interval(left) if left is not None else "?")),
                 (5, per_second(rate)), (2, loss), (KEEP, monitor)]
        text = " ".join(fit(parts, self.width()))
        size = min(BAR_MAX, BAR_MIN + max(0, self.width() - len(text)))
        bar = format(Bar(min(1.0, self.done / self.total), size,
                         charset=Bar.UTF if _utf8(self.stream) else Bar.ASCII), "")
        return text.replace(BAR, f"|{bar}|")

    def width(self) -> int:
        """What a line may use: the terminal's columns but the last (writing there makes some
        terminals wrap at once)."""
        return max(self.columns(self.stream) - 1, 1)

    def metrics(self, trainer, pl_module) -> tuple[str, str]:
        """The latest step's loss (named apart from the epoch mean `train/loss`) and the
        monitored metric (`?` until the first validation), read from the device once per
        draw."""
        m, key = trainer.callback_metrics, pl_module.METRICS.monitor[0]
        loss = f"loss_step={float(m['train/loss_step']):.4f}" if "train/loss_step" in m else ""
        return loss, f"{key}={float(m[key]):.4f}" if key in m else f"{key}=?"

    def clear(self) -> None:
        self.stream.write("\r" + " " * self.last_len + "\r")
        self.last_len = 0

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
        self.active = False


# Where the bar goes while the parts are fitted: as wide as its frame and narrowest bar, so
# parts are dropped before the bar would get narrower; it then takes what they leave.
BAR = "\0" * (BAR_MIN + 2)


def fit(parts: list[tuple[int, str]], width: int) -> list[str]:
    """The texts of `parts` ((priority, text), in display order) that fit in `width` columns
    joined by spaces: those with priority KEEP always, then the others by rising priority until
    one does not fit — it and every later one are dropped, so what a narrow terminal loses is
    fixed."""
    parts = [(p, t) for p, t in parts if t]
    shown = {i for i, (p, _) in enumerate(parts) if p == KEEP}

    def length(ids: set[int]) -> int:
        return sum(len(parts[i][1]) + 1 for i in ids) - 1

    for i in sorted(set(range(len(parts))) - shown, key=lambda i: parts[i][0]):
        if length(shown | {i}) > width:
            break
        shown.add(i)
    return [t for i, (_, t) in enumerate(parts) if i in shown]


def per_second(rate: float) -> str:
    """`23.8 step/s`, or `2.5 s/step` for slow steps; nothing before the first step."""
    if rate <= 0:
        return ""
    return f"{rate:.1f} step/s" if rate >= 1 else f"{1 / rate:.1f} s/step"


def epoch_of(trainer) -> str:
    """`epoch 3/10` (the epoch in progress; the last one once fit has ended)."""
    last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    now = trainer.current_epoch + 1
    return f"epoch {min(now, last)}/{last}" if last else f"epoch {now}"


def _utf8(stream: TextIO) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"
