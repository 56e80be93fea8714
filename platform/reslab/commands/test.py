"""`reslab test RUN_DIR|CKPT`: evaluate on the test split, recorded in summary.json."""

from __future__ import annotations

from pathlib import Path

from reslab import rundir, train


def run(args) -> int:
    run = rundir.find_run(args.run)
    ckpt = Path(args.run) if Path(args.run).is_file() else None  # RUN_DIR/checkpoints/X.ckpt
    result = train.test(run, args.overrides, ckpt)
    for k, v in sorted(result.items()):
        print(f"{k} {v:.4f}")
    return 0
