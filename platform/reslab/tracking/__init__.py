"""What a run records, and where: the run and sweep directories (rundir: every file name;
records: config.yaml, summary.json, metrics.csv reads, the lock), checkpoints (checkpoint),
metrics.csv (loggers), W&B: what a run is called there (wandb_identity: its names, ids, groups,
tags and config columns) and its W&B run (wandb_run: the logger's life, the summary, checkpoints
as model artifacts), secret redaction and where
commands may write their outputs (outputs). Importing this package imports neither torch nor W&B."""

from __future__ import annotations

from reslab.tracking.records import open_run, read_summary, write_summary
from reslab.tracking.rundir import RunDir, SweepDir, find_run

__all__ = ["RunDir", "SweepDir", "find_run", "open_run", "read_summary", "write_summary"]
