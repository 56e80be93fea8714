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

from reslab import progress, train
from reslab.callbacks import EpochLine
from reslab.config.load import load
from reslab.progress import RunBar
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
    assert lines[-1].startswith("epoch 1/2 100%") and "20/20 steps" in lines[-1]
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
    assert last.startswith("epoch 2/4  50%") and "20/40 steps" in last
    assert "ETA 00:10" in last and "2.00step/s" in last and "train/loss=0.5000" in last


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
    assert draws(out)[-1].startswith("epoch 1/2 3 steps [00:01, ")


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
    assert last.startswith("epoch 2/2 100%") and "10/10 steps" in last and "ETA 00:00" in last
    assert "loss=" in last and f"val/err={summary['val/err']:.4f}" in last
