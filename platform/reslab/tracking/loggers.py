"""The loggers every run has: metrics.csv in the run directory, and W&B (offline in the run
directory unless the recipe or W&B's own variables say otherwise; wandb_identity.py) unless
switched off. W&B never decides how a run ends: its failures are warnings."""

from __future__ import annotations

import csv
import io
import os
import sys
import warnings
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from reslab.compat import wandb_init_args, wandb_run_if_started, wandb_settings
from reslab.config.schema import Config
from reslab.fileio import write_csv
from reslab.metrics import csv_row, is_test
from reslab.tracking.records import read_metrics
from reslab.tracking.redaction import redact
from reslab.tracking.rundir import RunDir
from reslab.tracking.wandb_artifacts import log_checkpoint, log_end_of_run, use_pretrained
from reslab.tracking.wandb_identity import init_args, log_model, mode, task_metrics


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


class ReslabWandb(WandbLogger):
    """Lightning's W&B logger with reslab's checkpoints as artifacts (log_model=all: each new
    best.ckpt as it is written; the end-of-run ones in `close`)."""

    def __init__(self, cfg: Config, run: RunDir, **kwargs):
        super().__init__(log_model=False, **kwargs)
        wandb_init_args(self).pop("anonymous", None)  # Lightning's default; W&B warns it is unused
        self.cfg, self.run, self.lost = cfg, run, False

    def log_metrics(self, metrics, step=None) -> None:
        """W&B's service can die mid-run (SLURM signals every process of a cancelled job step,
        and a log between the signal and the step boundary killed rank 0, so DDP never stopped
        cleanly): a failed log is one warning, and W&B sits out the rest of the run."""
        if self.lost:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as e:  # noqa: BLE001 - W&B never decides how a run ends
            self.lost = True
            warnings.warn(f"W&B stopped logging ({type(e).__name__}: {str(e)[:200]}); "
                          "metrics.csv and summary.json are complete", stacklevel=2)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if log_model(self.cfg) != "all" or \
                not checkpoint_callback.best_model_path or wandb_run_if_started(self) is None:
            return
        score = checkpoint_callback.best_model_score
        guarded(log_checkpoint, self.experiment, self.cfg, self.run,
                checkpoint_callback.best_model_path, ["best"],
                {"score": None if score is None else float(score)})

    def close(self, summary: dict) -> None:
        """The summary (every key of summary.json) and the end-of-run checkpoints."""
        if wandb_run_if_started(self) is None or self.lost:
            return
        guarded(self.experiment.summary.update, wandb_summary(summary, self.cfg))
        if summary.get("status") != "failed":
            guarded(log_end_of_run, self.experiment, self.cfg, self.run, summary)


def wandb_logger(cfg: Config, run: RunDir) -> ReslabWandb | None:
    """The W&B logger, or None when W&B is off (recipe or WANDB_MODE=disabled: no W&B files)
    or cannot start — training never fails because of W&B."""
    if mode(cfg) == "disabled":
        return None
    quiet_wandb()
    try:
        args = init_args(cfg, run)
        logger = ReslabWandb(cfg, run, save_dir=args.pop("dir"), settings=settings(cfg), **args)
        experiment = logger.experiment  # start now: a failure is caught here, not mid-training
        define_metrics(experiment, cfg)
        guarded(use_pretrained, experiment, cfg)
        return logger
    except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
        warnings.warn(f"W&B could not start ({type(e).__name__}: {str(e)[:200]}); "
                      "continuing with metrics.csv only", stacklevel=2)
        finish_wandb()
        return None


def settings(cfg: Config):
    """System metrics and console capture follow the config (both on by default)."""
    w = cfg.logger.wandb
    return wandb_settings(w.system_metrics, save_code=False, console="auto" if w.console else "off",
                          init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)))


def define_metrics(experiment, cfg: Config) -> None:
    """Every metric against the global step (Lightning defines that), and the monitored metric's
    best as well as its last value in the summary (val/err min, val/psnr max)."""
    metric, direction = task_metrics(cfg).monitor
    experiment.define_metric(metric, step_metric="trainer/global_step", summary=f"{direction},last")


def wandb_summary(summary: dict, cfg: Config) -> dict:
    """summary.json as the W&B summary: the same keys and values, except the monitored metric,
    which W&B keeps as {min|max: best, last: value} (define_metric) — its `last` is
    summary.json's value and its best is summary.json's `<metric>_best`."""
    metric, direction = task_metrics(cfg).monitor
    out = redact(summary)
    if metric in out:
        out[metric] = {direction: summary.get(f"{metric}_best", summary[metric]),
                       "last": summary[metric]}
    return out


def finish_wandb(summary: dict | None = None, loggers: list = ()) -> None:
    """Close the W&B run with the run's summary; a W&B failure here (its service killed with the
    job) is a warning."""
    if "wandb" not in sys.modules:
        return
    import wandb

    for logger in loggers:
        if isinstance(logger, ReslabWandb) and summary is not None:
            logger.close(summary)
    if wandb.run is not None:
        guarded(wandb.finish)
    # finish() returns before W&B's service has written the run's last records; teardown waits
    # for them, so the run directory is complete (syncable) when reslab returns. It also drops
    # the settings W&B keeps for the whole process (mode, server) — also after a run that could
    # not start — so the next run in this process (a sweep's reused worker) starts from its own.
    guarded(wandb.teardown)


def test_to_wandb(cfg: Config, run: RunDir, summary: dict) -> None:
    """`reslab test`: the run's summary, test metrics included, into the same W&B run (resumed
    by its id; offline: a second offline-run folder with the same id, merged on sync)."""
    if mode(cfg) == "disabled":
        return
    quiet_wandb()
    try:
        import wandb

        args = {k: v for k, v in init_args(cfg, run).items()
                if k in ("id", "resume", "dir", "project", "entity", "mode")}
        experiment = wandb.init(**args, settings=settings(cfg))
        experiment.summary.update(wandb_summary(summary, cfg))
    except Exception as e:  # noqa: BLE001 - the test result is in summary.json regardless
        warnings.warn(f"W&B could not record the test ({type(e).__name__}: {str(e)[:200]}); "
                      "summary.json holds it", stacklevel=2)
    finish_wandb()


def guarded(fn, *args) -> Any:
    """Call a W&B step; a failure is a warning (W&B never decides how a run ends)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B: {getattr(fn, '__name__', fn)} failed ({type(e).__name__}: "
                      f"{str(e)[:200]}); metrics.csv and summary.json are complete", stacklevel=2)
        return None


def quiet_wandb() -> None:
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
