"""metrics.csv says what the console says: `step` = optimizer steps done, `epoch` 1-based; an
epoch's last step holds its step loss, train means and validation in one row; a test has its own
row; a run resumed mid-epoch logs the whole epoch's mean."""

from __future__ import annotations

import csv
import re
import signal

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from reslab.config.load import load
from reslab.errors import Interrupted
from reslab.run import train
from reslab.tracking.loggers import CSVMetrics
from reslab.tracking.rundir import RunDir
from support import TINY, run_dir

QUIET = ["logger.wandb.mode=disabled", "optim.schedule=constant"]  # epoch lines: not a terminal


def rows_of(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_rows_number_steps_and_epochs_as_the_console_does(tmp_path, capsys):
    summary = train.fit(load([], [*TINY, *QUIET, "trainer.max_epochs=2", f"run.root={tmp_path}"]))
    rows = rows_of(run_dir(tmp_path))
    fit_rows, test_rows = rows[:-1], rows[-1:]
    assert [(r["step"], r["epoch"]) for r in fit_rows] == \
        [(str(s), str(1 + (s - 1) // 5)) for s in range(1, 11)]  # one row per step, 5 an epoch
    epoch_rows = [r for r in fit_rows if r["val/err"]]
    assert all(r["train/loss"] and r["train/err"] and r["train/loss_step"] for r in epoch_rows)
    console = re.findall(r"^epoch (\d+)/2 step (\d+) .*val/err=([\d.]+)", capsys.readouterr().out,
                         re.M)
    assert console == [(r["epoch"], r["step"], f"{float(r['val/err']):.4f}") for r in epoch_rows]
    assert (test_rows[0]["step"], test_rows[0]["epoch"]) == (str(summary["global_step"]),
                                                              str(summary["epoch"])) == ("10", "2")
    assert test_rows[0]["test/err"] and not test_rows[0]["val/err"]


def test_each_logged_part_of_a_step_is_on_disk_at_once(tmp_path):
    """Lightning's calls for an epoch's last step (index 4, epoch 0): the step loss, then the
    validation, then the train means; then a test. After every call the file holds every value
    logged so far (a kill loses nothing), merged into the step's one row."""
    run = RunDir(tmp_path)
    log = CSVMetrics(run)
    calls = [({"train/loss_step": 0.5, "epoch": 0}, 3), ({"train/loss_step": 0.4, "epoch": 0}, 4),
             ({"val/err": 0.25, "val/err_best": 0.25, "epoch": 0}, 4),
             ({"train/loss": 0.45, "epoch": 0}, 4), ({"test/err": 0.3, "epoch": 1}, 5)]
    expected = [[("4", "1", {"train/loss_step": "0.5"})],
                [("4", "1", {"train/loss_step": "0.5"}), ("5", "1", {"train/loss_step": "0.4"})]]
    merged = {"train/loss_step": "0.4", "val/err": "0.25", "val/err_best": "0.25"}
    expected.append([expected[1][0], ("5", "1", merged)])
    expected.append([expected[1][0], ("5", "1", {**merged, "train/loss": "0.45"})])
    expected.append([*expected[-1], ("5", "1", {"test/err": "0.3"})])
    for (metrics, step), want in zip(calls, expected):
        log.log_metrics(metrics, step)
        got = [(r.pop("step"), r.pop("epoch"), {k: v for k, v in r.items() if v})
               for r in rows_of(tmp_path)]
        assert got == want


def test_a_value_logged_twice_at_one_step_keeps_both_rows(tmp_path):
    log = CSVMetrics(RunDir(tmp_path))
    log.log_metrics({"val/err": 0.5, "epoch": 0}, 4)
    log.log_metrics({"val/err": 0.4, "epoch": 0}, 4)
    assert [r["val/err"] for r in rows_of(tmp_path)] == ["0.5", "0.4"]


class SigtermAt(Callback):
    """SIGTERM as step `step` + 1 begins: the run stops at the end of that step (last.ckpt)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


def test_a_run_resumed_mid_epoch_logs_the_whole_epochs_mean(tmp_path):
    """Stopped at step 8 (3 steps into epoch 2) and resumed: the same weights as a straight run
    (test_cli), and now the same epoch-2 train/loss and train/err, not the last 2 steps' mean."""
    common = [*TINY, *QUIET, "run.test=false", "trainer.max_epochs=2"]
    train.fit(load([], [*common, f"run.root={tmp_path}/a"]))
    with pytest.raises(Interrupted, match="interrupted at step 8"):
        train.fit(load([], [*common, f"run.root={tmp_path}/b"]), callbacks=[SigtermAt(7)])
    b = RunDir(run_dir(tmp_path / "b"))
    resumed = train.fit(load([b.config]), resume=b)
    assert resumed["status"] == "completed" and resumed["resumed_at_steps"] == [8]
    straight = {r["epoch"]: r for r in rows_of(run_dir(tmp_path / "a")) if r["train/loss"]}
    again = {r["epoch"]: r for r in rows_of(b.path) if r["train/loss"]}
    assert again["2"]["step"] == "10"
    for key in ("train/loss", "train/err"):
        assert float(again["2"][key]) == pytest.approx(float(straight["2"][key]), rel=1e-6)
    weights = [torch.load(d / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
               for d in (run_dir(tmp_path / "a"), b.path)]
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())
