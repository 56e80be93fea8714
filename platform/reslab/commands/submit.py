"""`reslab submit`: a recipe, an array or a sweep as a SLURM job."""

from __future__ import annotations

import sys

from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config import recipes as shipped
from reslab.slurm import submit


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    if args.sweep:
        result = submit.submit_sweep(shipped.resolve(args.sweep, "sweep spec"), recipes,
                                     overrides, dry_run=args.dry_run)
    else:
        result = submit.submit(recipes or [str(DEFAULT_RECIPE)], overrides,
                               dry_run=args.dry_run, array=args.array)
    if args.dry_run:
        print(result["script"], end="")
        print(f"# dry run: nothing submitted; directories would be "
              f"{', '.join(result['run_dirs'])}", file=sys.stderr)
        return 0
    print(f"submitted job {result['job_id']}")
    for run in result["run_dirs"]:
        print(f"  run directory: {run}")
    print(f"  log: {result['log']}")
    return 0
