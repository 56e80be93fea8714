"""What each `reslab` subcommand does: load its inputs, call the module that does the work,
print the result. Each command imports its module when it runs, so `reslab config` never loads
Lightning (the one place in the package with lazy reslab imports)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reslab.errors import UserError

# `reslab train` with no recipe trains the quickstart (configs/ at the top of the source tree).
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def split_args(items: list[str]) -> tuple[list[str], list[str]]:
    """Recipe paths and KEY=VALUE overrides may come in any order."""
    recipes = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    return recipes, overrides


def cmd_train(args) -> int:
    from reslab import rundir, train
    from reslab.config.load import load

    recipes, overrides = split_args(args.items)
    if args.resume:
        run = rundir.find_run(args.resume)
        if recipes:
            raise UserError("--resume takes the run's own config.yaml; give only KEY=VALUE "
                            f"overrides, not {recipes[0]}")
        cfg = load([run.config], overrides)
    else:
        run = None
        cfg = load(recipes or [DEFAULT_RECIPE], overrides)
    summary = train.fit(cfg, resume=run)
    if train.is_rank_zero():
        print_summary(summary)
    return 0 if summary.get("status") == "completed" else 1


def print_summary(summary: dict) -> None:
    from reslab.metrics import SUMMARY

    width = max(map(len, SUMMARY))
    for k in SUMMARY:
        if k in summary:
            v = summary[k]
            print(f"  {k:<{width}}  {v:.4f}" if "/" in k else f"  {k:<{width}}  {v}")


def cmd_test(args) -> int:
    from reslab import rundir, train

    run = rundir.find_run(args.run)
    ckpt = Path(args.run) if Path(args.run).is_file() else None  # RUN_DIR/checkpoints/X.ckpt
    result = train.test(run, args.overrides, ckpt)
    for k, v in sorted(result.items()):
        print(f"{k} {v:.4f}")
    return 0


def cmd_models(args) -> int:
    from reslab import models
    from reslab.models.profile import profile

    names = models.list_models(args.pattern)
    if not names:
        raise UserError(f"no model matches '{args.pattern}' (try `reslab models` for all)")
    rows = []
    for name in names:
        info = models.info(name)
        params, macs = profile(name)
        rows.append((name, info.family, str(info.depth or info.default_depth),
                     info.shortcut or "-", f"{params:,}", _human(macs)))
    header = ("name", "family", "depth", "shortcut", "params", "MACs")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))).rstrip())
    return 0


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.1f}M"


def cmd_config(args) -> int:
    from reslab.config.load import load, to_yaml

    recipes, overrides = split_args(args.items)
    print(to_yaml(load(recipes or [DEFAULT_RECIPE], overrides)), end="")
    return 0


def cmd_submit(args) -> int:
    from reslab.slurm import submit

    recipes, overrides = split_args(args.items)
    if args.sweep:
        result = submit.submit_sweep(args.sweep, recipes, overrides, dry_run=args.dry_run)
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


def cmd_sweep(args) -> int:
    from reslab.sweep import results, spec, tune

    recipes, overrides = split_args(args.items)
    s = spec.load_spec(args.spec, overrides, recipes)
    if args.dry_run:
        print(spec.plan(s, args.cpus or os.cpu_count()))
        return 0
    rows = tune.run(s, resume=args.resume, address=args.address, cpus=args.cpus)
    out = spec.sweep_dir(s)
    print(results.format_table(rows))
    print(f"results: {out.results}  best config: {out.best_config}")
    failed = [r["trial"] for r in rows if r["status"] not in ("completed", "stopped")]
    if failed:
        print(f"{len(failed)} of {len(rows)} trials did not complete: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_compare(args) -> int:
    from reslab.report import compare

    by = args.by.split(",") if args.by else None
    if args.wandb:
        result = compare.compare_wandb(args.wandb, by, args.metric)
    else:
        result = compare.compare(args.dirs, by, args.metric, args.out)
    print(result["table"])
    print("written: " + ", ".join(str(p) for p in result["files"]))
    return 0


def cmd_bench(args) -> int:
    import json

    from reslab import bench
    from reslab.config.load import load

    recipes, overrides = split_args(args.items)
    cfg = load(recipes or [DEFAULT_RECIPE], overrides)
    result = bench.bench(cfg, steps=args.steps, rounds=args.rounds)
    print(json.dumps(result, indent=2) if args.json else bench.format_result(result))
    return 0


def cmd_status(args) -> int:
    from reslab.rundir import find_run
    from reslab.slurm import status

    for p in args.runs:
        find_run(p)  # a sentence for a path that is not a run directory
    if not args.runs and not Path(args.root).is_dir():
        raise UserError(f"--root {args.root} is not a directory")
    paths = [Path(p) for p in args.runs] or status.submitted_runs(Path(args.root))
    if not paths:
        print(f"no submitted runs under {args.root}/")
        return 0
    for r in status.status_rows(paths):
        print(f"{r['run']}\n  job {r['job']}  {r['state']}  restarts {r['restarts']}  "
              f"status {r['status']}  epoch {r['epoch']}  {r['metric']} {r['value']}\n"
              f"  log: {r['log']}")
    return 0
