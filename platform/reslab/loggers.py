"""The loggers every run has: metrics.csv in the run directory, and W&B (offline by default,
its files under the run directory) unless switched off."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
import warnings
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from reslab.config.load import flatten, to_dict
from reslab.config.schema import Config
from reslab.fileio import write_csv
from reslab.rundir import RunDir, read_metrics, redact


class CSVMetrics(Logger):
    """metrics.csv in the run directory: one row per logging call, columns `step`, `epoch` and
    every metric key (`split/name`). On resume it keeps the rows up to the checkpoint's step and
    appends after them, so no step appears twice."""

    def __init__(self, run: RunDir, resume_step: int | None = None):
        super().__init__()
        self.path = run.metrics
        self.rows: list[dict] = read_metrics(run, resume_step) if resume_step is not None else []
        self.columns = list(dict.fromkeys(k for r in self.rows for k in r)) or ["step", "epoch"]
        self._rewrite()

    name = property(lambda self: "csv")
    version = property(lambda self: "")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config is config.yaml

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"step": step, **{k: _num(v) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    @rank_zero_only
    def _rewrite(self) -> None:
        write_csv(self.path, self.columns, self.rows)


def _num(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def wandb_logger(cfg: Config, run: RunDir):
    """The W&B logger (offline by default, files under the run dir), or None when W&B is off or
    cannot start — training never fails because of W&B."""
    w = cfg.logger.wandb
    if w.mode == "disabled":
        return None
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(
            save_dir=str(run.path), id=wandb_id(run), name=w.name or cfg.run.name,
            project=w.project, entity=w.entity, group=w.group, tags=list(w.tags),
            job_type=w.job_type, mode=str(w.mode), resume="allow",
            config=flatten(redact(to_dict(cfg))),
            settings=wandb.Settings(init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)),
                                    save_code=False, x_disable_stats=True, console="off"),
        )
        _ = logger.experiment  # start now, so a failure is caught here and not mid-training
        return logger
    except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
        warnings.warn(f"W&B could not start ({type(e).__name__}: {str(e)[:200]}); "
                      "continuing with metrics.csv only", stacklevel=2)
        return None


def wandb_id(run: RunDir) -> str:
    """Stable across attempts (requeues, retries) and unique per run directory: W&B ids allow
    letters, digits, '-' and '_' only, so a sweep trial's 'depth=56,shortcut=none' gets a hash."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run.run_id):
        return run.run_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", run.run_id).strip("-")[:48]
    return f"{safe}-{hashlib.sha1(str(run.path).encode()).hexdigest()[:10]}"


def finish_wandb() -> None:
    """Close the W&B run; a W&B failure here (its service killed with the job) is a warning."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            try:
                wandb.finish()
            except Exception as e:  # noqa: BLE001 - W&B never decides how a run ends
                warnings.warn(f"W&B could not close the run ({type(e).__name__}: "
                              f"{str(e)[:200]}); metrics.csv and summary.json are complete",
                              stacklevel=2)


