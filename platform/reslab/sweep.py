"""Sweeps: a YAML spec -> Ray Tune trials, each calling the one `train.fit` path.

    <run.root>/<sweep name>/
        <trial>/            the usual run directory (config.yaml, summary.json, checkpoints, wandb/)
        sweep.csv           a row per trial: swept values, final and best metrics, status, error
        best_config.yaml    the best trial's resolved config
        tune/               Ray Tune's own state (what `--resume` restores)

A trial's directory is named by its swept values (`depth=56,shortcut=none,seed=1`), so a retried
trial, or the same trial after `--resume`, finds its own last.ckpt there and continues from it."""

from __future__ import annotations

import csv
import itertools
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab import config as C
from reslab import tracking
from reslab.compare import COLUMNS, sort_key
from reslab.compare import format_table as aligned
from reslab.errors import UserError
from reslab.registry import did_you_mean

SPEC_KEYS = ("name", "base", "space", "search", "scheduler", "metric", "mode", "num_samples",
             "seeds", "resources_per_trial", "max_concurrent", "max_failures")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
RESULT_KEYS = ("train/loss", *COLUMNS)  # the columns `reslab compare` shows, and the loss


@dataclass
class Spec:
    name: str
    recipes: list[str]
    overrides: list[str]
    space: dict[str, Any]
    search: str = "grid"
    scheduler: dict = field(default_factory=lambda: {"name": "fifo"})
    metric: str = "val/err"
    mode: str = "min"
    num_samples: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    cpu: float = 1.0
    gpu: float = 0.0
    max_concurrent: int = 0
    max_failures: int = 1
    root: Path = Path("runs")  # run.root, made absolute by the driver (trials run elsewhere)

    def grid_keys(self) -> list[str]:
        return [k for k, v in self.space.items() if isinstance(v, list)]

    def base_cfg(self, extra: list[str] = ()):
        return C.load(self.recipes, self.overrides + list(extra))


def load_spec(path: str | Path, overrides: list[str] = (), recipes: list[str] = ()) -> Spec:
    """Read and validate a sweep spec; extra recipes (a cluster profile) and KEY=VALUE
    overrides apply to the base config after the spec's own."""
    raw = C.read_yaml(path)
    for key in raw:
        if key not in SPEC_KEYS:
            raise UserError(f"unknown sweep key '{key}' in {path}{did_you_mean(key, SPEC_KEYS)}")
    base = raw.get("base") or {}
    here = Path(path).resolve().parent
    recipes = [str(_resolve(r, here)) for r in [*base.get("recipes", []), *recipes]]
    res = raw.get("resources_per_trial") or {}
    seeds = raw.get("seeds", [0])
    spec = Spec(
        name=str(raw.get("name") or Path(path).stem), recipes=list(recipes),
        overrides=[*base.get("overrides", []), *overrides], space=dict(raw.get("space") or {}),
        search=raw.get("search", "grid"), scheduler=dict(raw.get("scheduler") or {"name": "fifo"}),
        metric=raw.get("metric", "val/err"), mode=raw.get("mode", "min"),
        num_samples=int(raw.get("num_samples", 1)),
        seeds=list(range(seeds)) if isinstance(seeds, int) else list(seeds),
        cpu=float(res.get("cpu", 1)), gpu=float(res.get("gpu", 0)),
        max_concurrent=int(raw.get("max_concurrent", 0)),
        max_failures=int(raw.get("max_failures", 1)))
    validate_spec(spec)
    spec.root = Path(spec.base_cfg().run.root).resolve()
    return spec


def _resolve(recipe: str, here: Path) -> Path:
    """Recipe paths are relative to the working directory, or else to the spec's folder."""
    p = Path(recipe)
    return p.resolve() if p.exists() or p.is_absolute() else (here / p).resolve()


def validate_spec(spec: Spec) -> None:
    C.check_run_name(spec.name)
    known = C.all_keys()
    for key, value in spec.space.items():
        if key not in known:
            raise UserError(f"space key '{key}' is not a config key{did_you_mean(key, known)}")
        if isinstance(value, dict):
            (kind, args), = value.items() if len(value) == 1 else [(None, None)]
            if kind not in DISTRIBUTIONS:
                raise UserError(f"space.{key} must be a list (grid) or one of "
                                f"{', '.join(DISTRIBUTIONS)}, got {value}")
            if spec.search == "grid" and kind != "choice":
                raise UserError(f"space.{key} is a {kind} distribution: use search: random")
        elif not isinstance(value, list) or not value:
            raise UserError(f"space.{key} must be a non-empty list or a distribution, got {value!r}")
    checks = {"search": (spec.search, ("grid", "random")), "mode": (spec.mode, ("min", "max")),
              "scheduler.name": (spec.scheduler.get("name"), ("fifo", "asha"))}
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise UserError(f"sweep {key} must be one of {', '.join(allowed)}, got {value!r}")
    if spec.search == "grid" and spec.num_samples != 1:
        raise UserError("num_samples repeats random search; for replicates of a grid use seeds")
    if spec.gpu > 1:
        raise UserError(f"resources_per_trial.gpu={spec.gpu:g}: multi-GPU trials (one DDP job "
                        "per trial) are not supported yet; use gpu <= 1 per trial")
    if spec.cpu <= 0 or spec.gpu < 0:
        raise UserError(f"resources_per_trial needs cpu > 0 and gpu >= 0, got cpu={spec.cpu}, "
                        f"gpu={spec.gpu}")
    for point in grid_points(spec):  # every grid point is a valid config before anything runs
        spec.base_cfg(overrides_of(point))


def grid_points(spec: Spec) -> list[dict]:
    """The grid part of the space (lists, seeds); random keys are sampled by Tune."""
    keys = spec.grid_keys() + ["seed"]
    values = [spec.space[k] for k in spec.grid_keys()] + [spec.seeds]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def overrides_of(point: dict) -> list[str]:
    return [f"{k}={v}" for k, v in point.items() if not k.startswith("_")]


def trial_name(point: dict) -> str:
    """`model.depth=56, model.shortcut=none, seed=1` -> `depth=56,shortcut=none,seed=1`."""
    keys = [k for k in point if not k.startswith("_")]
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    parts = []
    for k in keys:
        v = point[k]
        v = f"{v:.4g}" if isinstance(v, float) else v
        parts.append(f"{k if short[k] in clash else short[k]}={v}")
    if "_sample" in point:
        parts.append(f"sample={point['_sample']}")
    return ",".join(parts)


def sweep_dir(spec: Spec) -> Path:
    return spec.root / spec.name


def plan(spec: Spec, cpus: float) -> str:
    """The --dry-run table: one line per grid trial, and the resource plan."""
    points = grid_points(spec)
    random = {k: v for k, v in spec.space.items() if isinstance(v, dict)}
    n = len(points) * (spec.num_samples if random else 1)
    at_once = max(1, int(cpus // spec.cpu))
    if spec.max_concurrent:
        at_once = min(at_once, spec.max_concurrent)
    lines = [f"sweep '{spec.name}' -> {sweep_dir(spec)}", f"{n} trials:"]
    lines += [f"  {trial_name(p)}" + (f"  x {spec.num_samples} samples of {random}" if random else "")
              for p in points]
    lines.append(f"resources: cpu={spec.cpu:g} gpu={spec.gpu:g} per trial; {cpus:g} CPUs -> "
                 f"{at_once} at a time, about {math.ceil(n / at_once)} rounds; scheduler "
                 f"{spec.scheduler.get('name')}; metric {spec.metric} ({spec.mode}); "
                 f"max_failures {spec.max_failures}")
    return "\n".join(lines)


def run(spec: Spec, resume: bool = False, address: str | None = None,
        cpus: int | None = None) -> list[dict]:
    """Run (or continue) the sweep; returns the sweep.csv rows."""
    import ray
    from ray import tune

    out = sweep_dir(spec)
    state = out / "tune"
    if resume and not state.is_dir():
        raise UserError(f"nothing to resume: {state} does not exist")
    if not resume and state.exists():
        raise UserError(f"sweep directory {out} already holds a sweep: pass --resume to "
                        "continue it, or set name/run.root to start a new one")
    tmp = start_ray(address, cpus)
    try:
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec),
                                        {"cpu": spec.cpu, "gpu": spec.gpu})
        if resume:
            tuner = restore(state, trainable)
        else:
            out.mkdir(parents=True, exist_ok=True)
            tuner = tune.Tuner(trainable, param_space=param_space(spec),
                               tune_config=tune_config(spec), run_config=run_config(spec, out))
        results = tuner.fit()
    finally:
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return write_results(spec, out, results)


def restore(state: Path, trainable):
    """Tune's own restore, with a damaged state turned into a sentence (nothing is written)."""
    from ray import tune

    try:
        return tune.Tuner.restore(str(state), trainable, resume_unfinished=True,
                                  resume_errored=True)
    except Exception as e:  # noqa: BLE001 - Ray raises many types for a bad state
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot resume the sweep: Ray Tune's state in {state} is unreadable "
                        f"({first}); the finished trials' directories and sweep.csv are "
                        "untouched") from None


def start_ray(address: str | None, cpus: int | None) -> Path | None:
    """A private local Ray (own temp dir, localhost only, never someone else's instance), or the
    cluster at `address`. Returns the private instance's temp dir."""
    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices; errors still show
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Save Tune's experiment state often: it is what `--resume` restores after a killed driver.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if address:
        ray.init(address=address, log_to_driver=False)
        return None
    tmp = Path(tempfile.gettempdir()) / f"reslab-ray-{os.getuid()}-{os.getpid()}"
    ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
             _temp_dir=str(tmp), _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    return tmp


def param_space(spec: Spec) -> dict:
    from ray import tune

    space: dict[str, Any] = {}
    for key, value in spec.space.items():
        if isinstance(value, list):
            space[key] = tune.grid_search(value)
        else:
            (kind, args), = value.items()
            space[key] = {"choice": tune.choice, "uniform": lambda a: tune.uniform(*a),
                          "loguniform": lambda a: tune.loguniform(*a),
                          "randint": lambda a: tune.randint(*a)}[kind](args)
    space["seed"] = tune.grid_search(spec.seeds)
    if spec.search == "random" and spec.num_samples > 1:
        space["_sample"] = tune.grid_search(list(range(spec.num_samples)))
    return space


def tune_config(spec: Spec):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.get("name") == "asha":
        sched = ASHAScheduler(time_attr="training_iteration", grace_period=int(s.get("grace_period", 1)),
                              reduction_factor=float(s.get("reduction_factor", 3)),
                              max_t=int(spec.base_cfg().trainer.max_epochs))
    else:
        sched = FIFOScheduler()
    return tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=sched, num_samples=1,
                           max_concurrent_trials=spec.max_concurrent or None)


def run_config(spec: Spec, out: Path):
    from ray import tune

    return tune.RunConfig(storage_path=str(out), name="tune", verbose=0,
                          failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          callbacks=[Progress()])


def run_trial(point: dict, spec: Spec) -> None:
    """One trial, inside a Ray worker: the sweep's base config + this point, trained by
    train.fit in the trial's own run directory (resuming from its checkpoint on a retry)."""
    import torch

    from reslab import train

    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        del os.environ[key]  # else Lightning picks SLURMEnvironment inside the trial
    torch.set_num_threads(max(1, int(spec.cpu)))
    name = trial_name(point)
    cfg = spec.base_cfg(overrides_of(point))
    # Set, not parsed from KEY=VALUE text: paths and names may hold any printable character.
    cfg.run.root, cfg.run.name = str(sweep_dir(spec).parent), spec.name
    cfg.trainer.devices = cfg.trainer.num_nodes = 1
    cfg.trainer.progress_bar = False
    w = cfg.logger.wandb
    w.group, w.job_type, w.name = spec.name, "sweep", name
    run = tracking.RunDir(tracking.run_path(cfg, name))
    if not run.config.is_file():
        tracking.open_run(cfg, name)
    train.fit(cfg, resume=run, callbacks=[TuneReport()])


def TuneReport():  # noqa: N802 - a Callback built lazily so `import reslab.sweep` needs no Ray
    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class _TuneReport(Callback):
        """Reports the epoch's metrics to Tune once per validation (ASHA decides on them)."""

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
            tune.report({**m, "epoch": trainer.current_epoch + 1,
                         "global_step": trainer.global_step})

    return _TuneReport()


def Progress():  # noqa: N802 - see TuneReport
    from ray.tune import Callback

    class _Progress(Callback):
        """One line whenever a trial starts, ends or fails: done / running / failed / pending."""

        def __init__(self):
            self.state: dict[str, str] = {}

        def _show(self, trial, state: str) -> None:
            self.state[trial.trial_id] = state
            counts = {s: list(self.state.values()).count(s) for s in ("done", "running", "failed")}
            print(f"[sweep] {trial_name(trial.config):<40} {state:<8} | "
                  f"{counts['done']} done, {counts['running']} running, "
                  f"{counts['failed']} failed", flush=True)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._show(trial, "running")

        def on_trial_restore(self, iteration, trials, trial, **info):
            self._show(trial, "running")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._show(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._show(trial, "failed")

    return _Progress()


def write_results(spec: Spec, out: Path, results) -> list[dict]:
    """sweep.csv, best_config.yaml and the rows for the printed table, in grid order (the
    variants of one depth side by side)."""
    rows = []
    for r in results:
        point = {k: v for k, v in r.config.items()}
        name = trial_name(point)
        summary = tracking.read_summary(tracking.RunDir(out / name))
        row = {"trial": name, **{k: v for k, v in point.items() if not k.startswith("_")},
               "status": "ERROR" if r.error else summary.get("status", "stopped"),
               **{k: v for k in RESULT_KEYS
                  if (v := summary.get(k, (r.metrics or {}).get(k))) is not None},
               "epoch": summary.get("epoch"), "wall_s": summary.get("wall_s"),
               "error": _sentence(r.error) if r.error else ""}
        rows.append(row)
    rows.sort(key=lambda r: [sort_key(r.get(k)) for k in spec.grid_keys()] + [r["trial"]])
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)
    scored = [r for r in rows if isinstance(r.get(spec.metric), (int, float))]
    if scored:
        pick = min if spec.mode == "min" else max
        best = pick(scored, key=lambda r: r[spec.metric])
        shutil.copyfile(out / best["trial"] / "config.yaml", out / "best_config.yaml")
    return rows


def _sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else type(error).__name__)[:300]


def format_table(rows: list[dict]) -> str:
    cols = ["trial", "status", *[k for k in RESULT_KEYS if any(r.get(k) is not None for r in rows)],
            "wall_s"]
    return aligned(cols, [[_fmt(r.get(c)) for c in cols] for r in rows])


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `reslab sweep`")
