"""`reslab sweep SPEC`: the trials with Ray Tune; the table and where the results are."""

from __future__ import annotations

import os
import shlex
import sys

from reslab.commands import split_args
from reslab.config import recipes as shipped
from reslab.sweep import results, spec, tune
from reslab.sweep.trials import started


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    s = spec.load_spec(shipped.resolve(args.spec, "sweep spec"), overrides, recipes)
    if args.dry_run:  # refuses what the run would refuse before Ray starts
        tune.prepare(s, args.resume, args.address, args.cpus)
        print(spec.plan(s, args.cpus or os.cpu_count()))
        return 0
    try:
        rows = tune.run(s, resume=args.resume, address=args.address, cpus=args.cpus)
    except KeyboardInterrupt:
        again = f"reslab sweep {shlex.join([args.spec, *args.items])}"
        print("[sweep] interrupted: " + (
            f"the trials that had not finished are recorded `interrupted`; `{again} --resume` "
            "continues them" if started(spec.sweep_dir(s)) else
            f"no trial had started; `{again}` starts the sweep"), file=sys.stderr)
        raise
    out = spec.sweep_dir(s)
    print(results.format_table(rows))
    print(f"results: {out.results}  best config: {out.best_config}")
    failed = [r["trial"] for r in rows if r["status"] not in ("completed", "stopped")]
    if failed:
        print(f"{len(failed)} of {len(rows)} trials did not complete: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0
