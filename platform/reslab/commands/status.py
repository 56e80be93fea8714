"""`reslab status`: queue state, restarts, progress and log tail of submitted runs."""

from __future__ import annotations

from pathlib import Path

from reslab.errors import UserError, escaped
from reslab.slurm import status
from reslab.tracking.rundir import find_run


def run(args) -> int:
    for p in args.runs:
        find_run(p)  # a sentence for a path that is not a run directory
    if not args.runs and not args.root.strip():
        raise UserError("--root is empty; give the folder that holds the runs (default: runs)")
    if not args.runs and not Path(args.root).is_dir():
        raise UserError(f"--root {args.root} is not a directory")
    paths = [Path(p) for p in args.runs] or status.submitted_runs(Path(args.root))
    if not paths:
        print(f"no submitted runs under {args.root.rstrip('/') or '/'}")
        return 0
    for r in status.status_rows(paths):
        # A run's files say what is shown: a control character in them is printed escaped.
        r = {k: v if isinstance(v, float) else escaped(str(v), 1000) for k, v in r.items()}
        value = f"{r['value']:.4g}" if isinstance(r["value"], float) else r["value"]
        print(f"{r['run']}\n  job {r['job']}  {r['state']}  restarts {r['restarts']}  "
              f"status {r['status']}  epoch {r['epoch']}  {r['metric']} {value}\n"
              f"  log: {r['log'] or '-'}")
    return 0
