"""`reslab test RUN_DIR|CKPT`: evaluate on the test split, recorded in summary.json's `tests`."""

from __future__ import annotations

from pathlib import Path

from reslab.run import evaluation
from reslab.tracking import rundir


def run(args) -> int:
    run = rundir.find_run(args.run)
    ckpt = Path(args.run) if Path(args.run).is_file() else None  # RUN_DIR/checkpoints/X.ckpt
    entry = evaluation.test(run, args.overrides, ckpt)
    print(f"checkpoint {run.checkpoints / entry['checkpoint']} (step {entry['global_step']})")
    for k, v in sorted(entry["metrics"].items()):
        print(f"{k} {v:.4f}")
    return 0
