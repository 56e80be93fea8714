"""`reslab train`: a recipe (or the quickstart), or `--resume RUN_DIR`; prints the summary."""

from __future__ import annotations

from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config.load import load
from reslab.errors import UserError
from reslab.metrics import SUMMARY
from reslab.run import train
from reslab.tracking import rundir


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    if args.resume is not None:
        run = rundir.find_run(args.resume)
        if sweep := rundir.sweep_of(run):
            raise UserError(f"{run.path} is a trial of the sweep {sweep}: `reslab sweep SPEC "
                            "--resume` continues its trials as the sweep defines them (a trial "
                            "resumed alone would no longer be the experiment its sweep.yaml and "
                            "sweep.csv describe)")
        if recipes:
            raise UserError("--resume takes the run's own config.yaml; give only KEY=VALUE "
                            f"overrides, not {recipes[0]}")
        cfg = load([run.config], overrides)
    else:
        run = None
        cfg = load(recipes or [DEFAULT_RECIPE], overrides)
    summary = train.fit(cfg, resume=run, overrides=overrides)
    if train.is_rank_zero():
        print_summary(summary)
    return 0 if summary.get("status") == "completed" else 1


def print_summary(summary: dict) -> None:

    width = max(map(len, SUMMARY))
    for k in SUMMARY:
        if k in summary:
            v = summary[k]
            print(f"  {k:<{width}}  {v:.4f}" if "/" in k else f"  {k:<{width}}  {v}")
