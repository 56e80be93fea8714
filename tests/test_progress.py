"""What a run shows while it trains: one bar for the whole run on a sized terminal (redrawn by
time, with the run's ETA and the epoch lines above it), the epoch lines anywhere else (a pipe,
a log, a pty without a size as under `script`, TERM=dumb)."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import sys
import termios
from types import SimpleNamespace

import pytest
import torch

from reslab.config.load import load
from reslab.metrics import CLASSIFICATION, SUPER_RESOLUTION
from reslab.run import progress, train
from reslab.run.callbacks import EpochLine
from reslab.run.progress import RunBar
from support import ROOT, TINY


class Terminal(io.StringIO):
    """A stream that says it is a terminal (the width comes from COLUMNS)."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def fake_trainer(total=20, max_epochs=2):
    return SimpleNamespace(estimated_stepping_batches=total, global_step=0, current_epoch=0,
                           max_epochs=max_epochs, is_global_zero=True, training=True,
                           state=SimpleNamespace(fn="fit"),
                           callback_metrics={"train/loss_step": torch.tensor(0.5)})


MODULE = SimpleNamespace(METRICS=SimpleNamespace(progress=("train/loss", "val/err"),
                                                  monitor=("val/err", "min")))


def draws(stream: io.StringIO) -> list[str]:
    return [d.strip() for d in stream.getvalue().split("\r") if d.strip()]


@pytest.mark.parametrize("step_s, expected_draws", [(0.125, 1 + 5 + 1), (2.0, 1 + 20 + 1)])
def test_the_bar_is_redrawn_by_time_not_by_step_count(step_s, expected_draws):
    """20 steps of 1/8 s: a draw every 0.5 s (5, plus the first and the last); 20 steps of 2 s:
    every step. Metrics are read only at a draw."""
    out, clock, trainer = Terminal(), Clock(), fake_trainer()
    bar = RunBar(out, clock=clock, columns=lambda s: 100)
    reads = []
    metrics = bar.metrics
    bar.metrics = lambda *a: reads.append(1) or metrics(*a)
    bar.on_train_start(trainer, MODULE)
    for step in range(1, 21):
        clock.t += step_s
        trainer.global_step = step
        bar.on_train_batch_end(trainer, MODULE, None, None, step - 1)
    bar.on_train_end(trainer, MODULE)
    lines = draws(out)
    assert len(lines) == expected_draws == len(reads)
    assert lines[-1].startswith("epoch 1/2 100%") and "20/20" in lines[-1]
    assert all(len(line) <= 99 for line in lines)  # never wider than the terminal


def test_the_bar_shows_the_run_total_and_its_eta_from_the_attempts_own_rate():
    """A run resumed at step 10 of 40 that did 10 more steps in 5 s has 20 left: ETA 10 s."""
    out, clock, trainer = Terminal(), Clock(), fake_trainer(total=40, max_epochs=4)
    trainer.global_step, trainer.current_epoch = 10, 1
    bar = RunBar(out, clock=clock, columns=lambda s: 120)
    bar.on_train_start(trainer, MODULE)
    clock.t += 5.0
    trainer.global_step = 20
    bar.on_train_batch_end(trainer, MODULE, None, None, 9)
    last = draws(out)[-1]
    assert last.startswith("epoch 2/4  50%") and "20/40" in last
    assert "ETA 00:10" in last and "2.0 step/s" in last and "loss_step=0.5000" in last


def test_epoch_lines_go_above_the_bar_and_validation_keeps_it_moving():
    out, clock, trainer = Terminal(), Clock(), fake_trainer()
    trainer.callback_metrics["val/err"] = torch.tensor(0.25)
    bar = RunBar(out, clock=clock, columns=lambda s: 100)
    bar.on_train_start(trainer, MODULE)
    trainer.training, clock.t = False, clock.t + 1
    bar.on_validation_batch_end(trainer, MODULE, None, None, 0)
    assert "epoch 1/2 validating" in draws(out)[-1]
    trainer.global_step = 10
    bar.on_train_epoch_end(trainer, MODULE)
    assert "\repoch 1/2 step 10 val/err=0.2500 (" in out.getvalue()  # from the line's start


def test_a_run_without_a_bound_shows_steps_and_rate():
    out, clock, trainer = Terminal(), Clock(), fake_trainer(total=float("inf"))
    bar = RunBar(out, clock=clock, columns=lambda s: 100)
    bar.on_train_start(trainer, MODULE)
    clock.t, trainer.global_step = clock.t + 1, 3
    bar.on_train_batch_end(trainer, MODULE, None, None, 2)
    assert draws(out)[-1] == "epoch 1/2 3 steps 00:01 3.0 step/s loss_step=0.5000 val/err=?"


def test_odd_terminals_get_the_epoch_lines(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert isinstance(progress.progress_callback(True, io.StringIO()), EpochLine)  # a pipe, a log
    assert not isinstance(progress.progress_callback(True, io.StringIO()), RunBar)
    assert progress.progress_callback(False, Terminal()) is None
    primary, secondary = os.openpty()  # a fresh pty has 0 columns, like one under `script`
    with os.fdopen(secondary, "w") as tty:
        try:
            assert os.get_terminal_size(tty.fileno()).columns == 0
            assert type(progress.progress_callback(True, tty)) is EpochLine
            fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            assert progress.terminal_columns(tty) == 100
            assert isinstance(progress.progress_callback(True, tty), RunBar)
            monkeypatch.setenv("TERM", "dumb")
            assert type(progress.progress_callback(True, tty)) is EpochLine
        finally:
            os.close(primary)


def test_a_run_on_a_terminal_draws_one_bar_for_all_epochs(monkeypatch, tmp_path):
    out = Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("TERM", raising=False)
    summary = train.fit(load([ROOT / "configs/quickstart.yaml"], [
        *TINY, "trainer.max_epochs=2", "logger.wandb.mode=disabled", "run.test=false",
        f"run.root={tmp_path}"]))
    assert summary["status"] == "completed"
    text = out.getvalue()
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    epoch_lines = [line for line in lines if " step " in line and "%|" not in line]
    assert [line.split()[:4] for line in epoch_lines] == [["epoch", "1/2", "step", "5"],
                                                          ["epoch", "2/2", "step", "10"]]
    assert f"val/err={summary['val/err']:.4f}" in epoch_lines[-1]
    last = draws(out)[-1]
    assert last.startswith("epoch 2/2 100%") and "ETA 00:00" in last
    assert "loss_step=" in last and f"val/err={summary['val/err']:.4f}" in last


def test_parts_are_dropped_whole_in_priority_order_never_a_kept_one():
    parts = [(progress.KEEP, "epoch"), (2, "bb"), (1, "cc"), (3, "d"), (progress.KEEP, "val")]
    assert progress.fit(parts, 80) == ["epoch", "bb", "cc", "d", "val"]
    assert progress.fit(parts, 12) == ["epoch", "cc", "val"]  # bb does not fit: d goes with it
    assert progress.fit(parts, 3) == ["epoch", "val"]  # too narrow: the kept ones all the same


def long_run(metrics: dict, monitor=("val/err", "min"), progress_keys=CLASSIFICATION.progress):
    """Epoch 30 of 30 at step 1400 of 1410, 8300 s in (2:18:20, 5.9 s/step): wide numbers."""
    trainer = fake_trainer(total=1410, max_epochs=30)
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in metrics.items()}
    module = SimpleNamespace(METRICS=SimpleNamespace(progress=progress_keys, monitor=monitor))
    return trainer, module


CLASSIFICATION_METRICS = {"train/loss_step": 0.0123, "train/loss": 0.0234, "train/err": 0.0056,
                          "val/err": 0.0278, "val/err_best": 0.0250}
SR_METRICS = {"train/loss_step": 0.0123, "train/loss": 0.0234, "val/psnr": 31.2345,
              "val/psnr_bicubic": 29.8765, "val/psnr_best": 31.3456}


def names(line: str) -> set[str]:
    """A line's parts by name (`val/err=0.1` -> `val/err`, the epoch's `(2.5s)` -> `time`)."""
    return {"time" if t.startswith("(") else t.split("=")[0] for t in line.split()}


@pytest.mark.parametrize("metrics, monitor, keys", [
    (CLASSIFICATION_METRICS, ("val/err", "min"), CLASSIFICATION.progress),
    (SR_METRICS, ("val/psnr", "max"), SUPER_RESOLUTION.progress)])
def test_every_width_keeps_the_whole_bar_the_eta_and_the_monitored_metric(metrics, monitor, keys):
    """From 80 to 200 columns: no line reaches the last column, the bar is never narrower than
    BAR_MIN, the ETA and the monitored metric are always there, and a wider terminal shows
    everything a narrower one does (parts go in a fixed order)."""
    trainer, module = long_run(metrics, monitor, keys)
    columns, before = [80], (set(), set())
    bar = RunBar(Terminal(), clock=Clock(), columns=lambda s: columns[0])
    bar.on_train_start(trainer, module)
    trainer.global_step, trainer.current_epoch, bar.done = 1400, 29, 1400
    bar.initial, bar.started, bar.drawn_at = 0, bar.clock() - 8300.0, bar.clock()
    for width in range(80, 201):
        columns[0] = width
        text, line = bar.bar_line(trainer, module, ""), bar.line(trainer, module)
        assert len(text) < width and len(line) < width, (width, text, line)
        inner = text.split("|")[1]
        assert len(inner) >= progress.BAR_MIN and "ETA 00:59" in text
        monitored = f"{monitor[0]}={metrics[monitor[0]]:.4f}"
        assert text.endswith(monitored) and monitored in line and "step 1400" in line
        shown = (names(text.replace(inner, " ")), names(line))
        assert all(b <= s for b, s in zip(before, shown)), width
        before = shown
    assert "1400/1410" in text and "loss_step=0.0123" in text and line.endswith("s)")


def test_at_80_columns_the_step_loss_outlasts_the_counters_and_best_goes_first():
    trainer, module = long_run(CLASSIFICATION_METRICS)
    bar = RunBar(Terminal(), clock=Clock(), columns=lambda s: 80)
    bar.on_train_start(trainer, module)
    trainer.global_step, trainer.current_epoch, bar.done = 1400, 29, 1400
    bar.started = bar.drawn_at - 8300.0
    text = bar.bar_line(trainer, module, "")
    assert text.startswith("epoch 30/30  99% |") and "1400/1410" not in text
    assert text.endswith("| ETA 00:59 loss_step=0.0123 val/err=0.0278")
    line = bar.line(trainer, module)
    assert line.startswith("epoch 30/30 step 1400 train/loss=0.0234 train/err=0.0056 val/err=")
    assert "val/err_best" not in line


@pytest.mark.parametrize("columns", [1, 2, 20, 40, 1000])
def test_a_tiny_or_huge_terminal_gets_a_bar_line_that_fits(columns):
    """Below what the kept parts need the bar line is cut (a wrapped line breaks the redraw);
    on a huge one the bar stops growing at BAR_MAX."""
    trainer, module = long_run(CLASSIFICATION_METRICS)
    out = Terminal()
    bar = RunBar(out, clock=Clock(), columns=lambda s: columns)
    bar.on_train_start(trainer, module)
    assert all(0 < len(d) < max(columns, 2) for d in draws(out))
    if columns == 1000:
        assert len(draws(out)[-1].split("|")[1]) == progress.BAR_MAX
