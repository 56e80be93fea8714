"""`reslab submit`: a recipe, an array or a sweep as a SLURM job."""

from __future__ import annotations

import sys

from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config import recipes as shipped
from reslab.errors import UserError
from reslab.slurm import submit


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    for option, given in (("--sweep", args.sweep), ("--array", args.array)):
        if given is not None and len(given) > 1:  # argparse would keep the last alone
            raise UserError(f"{option} is given {len(given)} times; give it once")
    args.sweep, args.array = (given and given[0] for given in (args.sweep, args.array))
    if args.sweep is not None and args.array is not None:
        raise UserError("--array and --sweep do not go together: a sweep's trials come from "
                        "its spec (space, seeds); --array varies one recipe's runs")
    if args.sweep is not None:
        result = submit.submit_sweep(shipped.resolve(args.sweep, "sweep spec"), recipes,
                                     overrides, dry_run=args.dry_run)
    else:
        result = submit.submit(recipes or [str(DEFAULT_RECIPE)], overrides,
                               dry_run=args.dry_run, array=args.array)
    if args.dry_run:
        print(result["script"], end="")
        print(f"# dry run: nothing submitted; directories would be "
              f"{', '.join(result['run_dirs'])}; the cluster's partitions, features and sizes "
              "are checked by `... --dry-run | sbatch --test-only`", file=sys.stderr)
        return 0
    print(f"submitted job {result['job_id']}")
    for run in result["run_dirs"]:
        print(f"  run directory: {run}")
    print(f"  log: {result['log']}")
    return 0
