"""A sweep spec (sweeps/README.md): a typed schema merged like a recipe — an unknown key or a
wrong type is a sentence — then validated so that every grid point is a valid config before
Ray starts. No Ray here.

A trial's directory is named by its swept values (`depth=56,shortcut=none,seed=1`), so a retried
trial, or the same trial after `--resume`, finds its own last.ckpt there and continues from it."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from reslab.config import recipes as shipped
from reslab.config.load import all_keys, derive, load, merge, read_yaml
from reslab.config.schema import Config
from reslab.config.validate import check_run_name
from reslab.errors import UserError
from reslab.registry import did_you_mean
from reslab.rundir import SweepDir

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


@dataclass
class BaseFile:
    recipes: list[str] = field(default_factory=list)    # merged in order onto the schema
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE after the recipes


@dataclass
class SchedulerFile:
    name: str = "fifo"              # fifo | asha
    grace_period: int = 1           # asha: epochs before a trial can be stopped
    reduction_factor: float = 3.0   # asha: keep 1/reduction_factor at each rung


@dataclass
class ResourcesFile:
    cpu: float = 1.0
    gpu: float = 0.0                # fractions share a GPU between trials


@dataclass
class SpecFile:
    name: str | None = None         # None: the file's name
    base: BaseFile = field(default_factory=BaseFile)
    space: dict[str, Any] = field(default_factory=dict)  # key -> list (grid) or {dist: args}
    search: str = "grid"            # grid | random
    scheduler: SchedulerFile = field(default_factory=SchedulerFile)
    metric: str = "val/err"
    mode: str = "min"               # min | max
    num_samples: int = 1            # random search: samples per grid point
    seeds: Any = field(default_factory=lambda: [0])  # a list of seeds, or a count
    resources_per_trial: ResourcesFile = field(default_factory=ResourcesFile)
    max_concurrent: int = 0         # 0: as many as the resources allow
    max_failures: int = 1           # retries of a failing trial (each resumes its checkpoint)


@dataclass(frozen=True)
class Spec:
    name: str
    recipes: tuple[str, ...]
    overrides: tuple[str, ...]
    space: dict[str, Any]
    search: str
    scheduler: SchedulerFile
    metric: str
    mode: str
    num_samples: int
    seeds: tuple[int, ...]
    cpu: float
    gpu: float
    max_concurrent: int
    max_failures: int
    root: Path                      # run.root, absolute (trials run in other directories)

    def grid_keys(self) -> list[str]:
        return [k for k, v in self.space.items() if isinstance(v, list)]

    def base_cfg(self, extra: list[str] = ()) -> Config:
        return load(list(self.recipes), [*self.overrides, *extra])

    def trial_cfg(self, point: dict) -> Config:
        """The base config with a trial's values, placed and named as a sweep trial."""
        cfg = self.base_cfg(overrides_of(point))
        return derive(cfg, {"run.root": str(self.root), "run.name": self.name,
                            "trainer.devices": 1, "trainer.num_nodes": 1,
                            "trainer.progress_bar": False, "logger.wandb.group": self.name,
                            "logger.wandb.job_type": "sweep-trial",
                            "logger.wandb.name": trial_name(point)})


def load_spec(path: str | Path, overrides: list[str] = (), recipes: list[str] = ()) -> Spec:
    """Read and validate a sweep spec; extra recipes (a cluster profile) and KEY=VALUE
    overrides apply to the base config after the spec's own."""
    raw = OmegaConf.to_object(merge(OmegaConf.structured(SpecFile), read_yaml(path),
                                    source=str(path), what="sweep key"))
    here = Path(path).resolve().parent
    seeds = list(range(raw.seeds)) if isinstance(raw.seeds, int) else raw.seeds
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise UserError(f"seeds must be a count or a list of integers, got {raw.seeds!r}")
    res = raw.resources_per_trial
    spec = Spec(
        name=raw.name or Path(path).stem,
        recipes=tuple(str(_resolve(r, here)) for r in [*raw.base.recipes, *recipes]),
        overrides=(*raw.base.overrides, *overrides), space=dict(raw.space), search=raw.search,
        scheduler=raw.scheduler, metric=raw.metric, mode=raw.mode, num_samples=raw.num_samples,
        seeds=tuple(seeds), cpu=res.cpu, gpu=res.gpu, max_concurrent=raw.max_concurrent,
        max_failures=raw.max_failures, root=Path("."))
    validate_spec(spec)
    return Spec(**{**spec.__dict__, "root": Path(spec.base_cfg().run.root).resolve()})


def _resolve(recipe: str, here: Path) -> Path:
    """Recipe paths are relative to the working directory, or else to the spec's folder, or
    else name a shipped recipe (`configs/quickstart.yaml` from an installed package)."""
    p = Path(recipe)
    if p.exists() or p.is_absolute():
        return p.resolve()
    return (here / p).resolve() if (here / p).exists() else Path(shipped.resolve(recipe))


def validate_spec(spec: Spec) -> None:
    check_run_name(spec.name)
    known = all_keys()
    for key, value in spec.space.items():
        if key not in known:
            raise UserError(f"space key '{key}' is not a config key{did_you_mean(key, known)}")
        if isinstance(value, dict):
            (kind, args), = value.items() if len(value) == 1 else [(None, None)]
            if kind not in DISTRIBUTIONS:
                raise UserError(f"space.{key} must be a list (grid) or one of "
                                f"{', '.join(DISTRIBUTIONS)}, got {value}")
            check_distribution(key, kind, args)
            if spec.search == "grid" and kind != "choice":
                raise UserError(f"space.{key} is a {kind} distribution: use search: random")
        elif not isinstance(value, list) or not value:
            raise UserError(f"space.{key} must be a non-empty list or a distribution, got {value!r}")
    checks = {"search": (spec.search, ("grid", "random")), "mode": (spec.mode, ("min", "max")),
              "scheduler.name": (spec.scheduler.name, ("fifo", "asha"))}
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
    names = [trial_name(p) for p in grid_points(spec)]
    if dup := next((n for n in names if names.count(n) > 1), None):
        raise UserError(f"the sweep has trial {dup} twice (a value repeated in space or seeds); "
                        "each trial needs a directory of its own")
    for point in grid_points(spec):  # every grid point is a valid config before anything runs
        spec.base_cfg(overrides_of(point))


def check_distribution(key: str, kind: str, args: Any) -> None:
    """choice: a non-empty list; uniform, loguniform, randint: [lo, hi] with lo < hi (hi is
    excluded for randint, loguniform needs lo > 0, randint integers)."""
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise UserError(f"space.{key}: choice takes a non-empty list, got {args!r}")
        return
    number = (int,) if kind == "randint" else (int, float)
    ok = (isinstance(args, list) and len(args) == 2
          and all(isinstance(a, number) and not isinstance(a, bool) and math.isfinite(a)
                  for a in args)
          and args[0] < args[1] and (kind != "loguniform" or args[0] > 0))
    if not ok:
        need = {"randint": "integers", "loguniform": "numbers with 0 < lo"}.get(kind, "numbers")
        raise UserError(f"space.{key}: {kind} takes [lo, hi], {need} and lo < hi, got {args!r}")


def grid_points(spec: Spec) -> list[dict]:
    """The grid part of the space (lists, seeds); random keys are drawn by sweep/trials.py."""
    keys = spec.grid_keys() + ["seed"]
    values = [spec.space[k] for k in spec.grid_keys()] + [list(spec.seeds)]
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


def sweep_dir(spec: Spec) -> SweepDir:
    return SweepDir(spec.root / spec.name)


def plan(spec: Spec, cpus: float) -> str:
    """The --dry-run table: one line per grid trial, and the resource plan."""
    points = grid_points(spec)
    random = {k: v for k, v in spec.space.items() if isinstance(v, dict)}
    n = len(points) * (spec.num_samples if spec.search == "random" else 1)
    at_once = max(1, int(cpus // spec.cpu))
    if spec.max_concurrent:
        at_once = min(at_once, spec.max_concurrent)
    lines = [f"sweep '{spec.name}' -> {sweep_dir(spec).path}", f"{n} trials:"]
    lines += [f"  {trial_name(p)}" + (f"  x {spec.num_samples} samples of {random}" if random else "")
              for p in points]
    lines.append(f"resources: cpu={spec.cpu:g} gpu={spec.gpu:g} per trial; {cpus:g} CPUs -> "
                 f"{at_once} at a time, about {math.ceil(n / at_once)} rounds; scheduler "
                 f"{spec.scheduler.name}; metric {spec.metric} ({spec.mode}); "
                 f"max_failures {spec.max_failures}")
    return "\n".join(lines)
