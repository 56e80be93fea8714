"""The `reslab` command: thin argument parsing that dispatches to the modules.

Bad input exits with status 2 and one sentence on stderr; nothing is written for a refused
command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reslab import __version__
from reslab.errors import TrainingError, UserError

# `reslab train` with no recipe trains the quickstart (configs/ at the top of the source tree).
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"

EPILOG = """\
examples:
  reslab train                                   ResNet-20 on the embedded digits (quickstart)
  reslab train configs/experiment/cifar10_paper.yaml model.depth=56 data.root=/data
  reslab train --resume runs/quickstart/20261122-101500-a1b2c3
  reslab test runs/quickstart/20261122-101500-a1b2c3
  reslab models 'resnet*'
  reslab config configs/quickstart.yaml model.shortcut=none
  reslab submit configs/quickstart.yaml configs/slurm/local.yaml --dry-run
  reslab sweep sweeps/degradation_digits.yaml && reslab compare runs/degradation_digits
  reslab bench configs/bench/cifar_cpu.yaml model.depth=56

Arguments containing '=' are KEY=VALUE overrides (see `reslab config` for every key); the
others are recipe files, merged in order onto the defaults."""


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
    failed = [r["trial"] for r in rows if r["status"] != "completed"]
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
    from reslab.slurm import status

    paths = [Path(p) for p in args.runs] or status.submitted_runs(Path(args.root))
    if not paths:
        print(f"no submitted runs under {args.root}/")
        return 0
    for r in status.status_rows(paths):
        print(f"{r['run']}\n  job {r['job']}  {r['state']}  restarts {r['restarts']}  "
              f"status {r['status']}  epoch {r['epoch']}  {r['metric']} {r['value']}\n"
              f"  log: {r['log']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reslab", description="Residual-network experiments: recipes, SLURM, sweeps, W&B.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a recipe (default: configs/quickstart.yaml)",
                       description="Train a recipe; prints the run directory and a summary.")
    t.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (same directory, same W&B run)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("test", help="evaluate a run's best checkpoint (or the one given) on the "
                       "test split")
    e.add_argument("run", metavar="RUN_DIR|CKPT")
    e.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    e.set_defaults(fn=cmd_test)

    m = sub.add_parser("models", help="list registered models: params and MACs")
    m.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*'")
    m.set_defaults(fn=cmd_models)

    s = sub.add_parser("submit", help="submit a recipe as a SLURM job (sbatch)",
                       description="Render an sbatch script from the recipe (the slurm section "
                       "plus a cluster profile such as configs/slurm/local.yaml), write it into "
                       "the run's slurm/ folder and submit it. The job survives preemption: "
                       "USR1 -> checkpoint at the next step -> requeue -> resume.")
    s.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    s.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    s.add_argument("--sweep", metavar="SPEC.yaml",
                   help="submit a sweep: a Ray cluster over the job's nodes runs its trials")
    s.add_argument("--array", metavar="KEY=V1,V2,...",
                   help="one sbatch --array job, a task (own run dir, own W&B run) per value")
    s.set_defaults(fn=cmd_submit)

    w = sub.add_parser("sweep", help="run a sweep spec with Ray Tune",
                       description="Run the trials of a sweep spec (sweeps/README.md) with Ray "
                       "Tune, each through the same training path; writes sweep.csv and "
                       "best_config.yaml in <run.root>/<sweep name>/.")
    w.add_argument("spec", metavar="SPEC.yaml")
    w.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE",
                   help="extra recipes (e.g. a cluster profile) and overrides of the base config")
    w.add_argument("--dry-run", action="store_true", help="print the trials and resource plan")
    w.add_argument("--resume", action="store_true",
                   help="continue a killed sweep: finished trials are not rerun")
    w.add_argument("--address", help="join this Ray cluster instead of starting a private one")
    w.add_argument("--cpus", type=int, help="CPUs for the private Ray (default: all)")
    w.set_defaults(fn=cmd_sweep)

    cp = sub.add_parser("compare", help="tables and figures over runs and sweeps (offline)",
                        description="Group runs (run or sweep directories) by the keys that "
                        "vary between them, print mean ± std over seeds, and write curves.png, "
                        "final.png, diagnostics.png (if measured) and report.html.")
    cp.add_argument("dirs", nargs="*", metavar="DIR")
    cp.add_argument("--by", metavar="KEY,KEY", help="group by these config keys "
                    "(default: the keys that vary, e.g. model.depth,model.shortcut)")
    cp.add_argument("--metric", help="main metric (default val/err; val/psnr for super-resolution)")
    cp.add_argument("--out", metavar="DIR", help="where figures go (default: FIRST_DIR/compare)")
    cp.add_argument("--wandb", metavar="ENTITY/PROJECT",
                    help="read runs through the W&B API instead of directories (online)")
    cp.set_defaults(fn=cmd_compare)

    b = sub.add_parser("bench", help="images/s of reslab's training path vs a plain PyTorch loop",
                       description="Time steady-state training steps of reslab's path (Trainer, "
                       "callbacks, logging) and of a plain PyTorch loop with the same model, data, "
                       "optimizer and precision, alternating in rounds; then the input pipelines.")
    b.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    b.add_argument("--steps", type=int, default=30, help="timed steps per round (default 30)")
    b.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(fn=cmd_bench)

    st = sub.add_parser("status", help="queue state, restarts, epoch and log tail of submitted runs")
    st.add_argument("runs", nargs="*", metavar="RUN_DIR")
    st.add_argument("--root", default="runs", help="where to look when no RUN_DIR is given")
    st.set_defaults(fn=cmd_status)

    c = sub.add_parser("config", help="print the resolved, validated config")
    c.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    c.set_defaults(fn=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")  # online only when the user asks for it
    parser = build_parser()
    # Recipes and KEY=VALUE may come after options too (`submit --dry-run x.yaml k=v`).
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "items") or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.items += extra
    try:
        return args.fn(args)
    except UserError as e:
        print(f"reslab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"reslab {args.command}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reslab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
