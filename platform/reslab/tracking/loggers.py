"""The metrics.csv logger every run has (CSVMetrics), in the run directory. W&B, the other
logger, is tracking/wandb_run.py (what it is called there: wandb_identity.py)."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from reslab.fileio import write_csv
from reslab.metrics import csv_row, is_test
from reslab.tracking.records import read_metrics
from reslab.tracking.rundir import RunDir


class CSVMetrics(Logger):
    """metrics.csv in the run directory: columns `step`, `epoch` and every metric key
    (`split/name`); one row per step that logged anything. `step` counts the optimizer steps
    done (summary.json's `global_step`, the console's `step 10`) and `epoch` is 1-based (the
    console's `epoch 1/30`), so an epoch's last step holds that step's loss, the epoch's train
    means and its validation in ONE row; test metrics get a row of their own (`epoch`: the
    epochs trained). Each row is on disk once logged: a later part of the same step rewrites
    only that last line. On resume it keeps the rows up to the checkpoint's step and appends
    after them, so no step appears twice."""

    def __init__(self, run: RunDir, resume_step: int | None = None):
        super().__init__()
        self.path = run.metrics
        self.rows: list[dict] = read_metrics(run, resume_step) if resume_step is not None else []
        self.columns = list(dict.fromkeys(k for r in self.rows for k in r)) or ["step", "epoch"]
        self.tail = 0  # the bytes of the file's last line
        self._rewrite()

    name = property(lambda self: "csv")
    version = property(lambda self: "")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config is config.yaml

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = csv_row({k: _num(v) for k, v in metrics.items()}, step)
        merge = bool(self.rows) and same_row(self.rows[-1], row)
        if merge:
            self.rows[-1].update(row)
        else:
            self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            self._write_last(over_last=merge)

    @rank_zero_only
    def _rewrite(self) -> None:
        write_csv(self.path, self.columns, self.rows)
        self.tail = len(csv_line(self.columns, self.rows[-1])) if self.rows else 0

    def _write_last(self, over_last: bool) -> None:
        """Append the last row, or write it over the file's last line when it is that line
        with more values (the rows before it are not touched)."""
        line = csv_line(self.columns, self.rows[-1])
        with open(self.path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(end - self.tail if over_last else end)
            f.write(line)
            f.truncate()
        self.tail = len(line)


def same_row(last: dict, row: dict) -> bool:
    """The new values belong in the last row: the same step and epoch, no value twice, neither
    a test's."""
    return position(last) == position(row) and not is_test(last) and not is_test(row) \
        and not any(last.get(k) not in (None, "") for k in row if k not in ("step", "epoch"))


def position(row: dict) -> tuple[str, ...]:
    """A row's step and epoch as the file has them (a row read back holds strings)."""
    return tuple("" if row.get(k) is None else str(row[k]) for k in ("step", "epoch"))


def csv_line(columns: list[str], row: dict) -> bytes:
    text = io.StringIO(newline="")
    csv.DictWriter(text, columns).writerow(row)
    return text.getvalue().encode()


def _num(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
