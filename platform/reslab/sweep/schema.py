"""A sweep spec's schema (sweeps/README.md): every key with its domain beside it, as the config
schema declares its keys (reslab.config.domain), checked by sweep/check.py; the validated `Spec`;
and its trials' points and names. No Ray here.

A trial's directory is named by its swept values (`depth=56,shortcut=none,seed=1`), so a retried
trial, or the same trial after `--resume`, finds its own last.ckpt there and continues from it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.config.domain import LINE, NAME, PATH, Domain, value
from reslab.config.load import derive, load
from reslab.config.schema import SEED, Config

# A sweep's trials (grid points x seeds x samples) at most: each grid point is validated as a
# config before anything runs (~0.1 s each here), and more trials than this are a typo, not a plan.
MAX_TRIALS = 1000
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


@dataclass
class BaseFile:
    # merged in order onto the config schema
    recipes: list[str] = value([], max_len=100, each=Domain(text=PATH))
    overrides: list[str] = value([], max_len=1000, each=Domain(text=LINE))  # KEY=VALUE after them


@dataclass
class SchedulerFile:
    name: str = value("fifo", choices=("fifo", "asha"))
    grace_period: int = value(1, ge=1, le=10**6)       # asha: epochs before a trial can be stopped
    reduction_factor: float = value(3.0, gt=1, le=100)  # asha: keep 1/reduction_factor at each rung


@dataclass
class ResourcesFile:
    # Ray counts resources in units of 0.0001 (a smaller share is a ValueError inside Tune)
    cpu: float = value(1.0, ge=0.0001, le=4096)
    gpu: float = value(0.0, special=(0,), ge=0.0001, le=1)  # fractions share a GPU; > 1: not yet


@dataclass
class SpecFile:
    name: str | None = value(None, text=NAME)  # None: the file's name
    base: BaseFile = field(default_factory=BaseFile)
    # config key -> a list (a grid axis) or {distribution: args}: checked key by key (check.py)
    space: dict[str, Any] = field(default_factory=dict)
    search: str = value("grid", choices=("grid", "random"))
    scheduler: SchedulerFile = field(default_factory=SchedulerFile)
    metric: str = value("val/err", text=LINE)  # and one the task reports at each validation
    mode: str = value("min", choices=("min", "max"))
    num_samples: int = value(1, ge=1, le=MAX_TRIALS)  # random search: samples per grid point
    # a list of seeds, or a count (3: seeds 0, 1, 2; checked as SEED_COUNT)
    seeds: Any = value([0], min_len=1, max_len=MAX_TRIALS, each=Domain(ge=0, lt=SEED))
    resources_per_trial: ResourcesFile = field(default_factory=ResourcesFile)
    max_concurrent: int = value(0, ge=0, le=MAX_TRIALS)  # 0: as many as the resources allow
    # retries of a failing trial (each resumes its checkpoint); -1: no limit, as in Ray Tune
    max_failures: int = value(1, special=(-1,), ge=0, le=1000)


SEED_COUNT = Domain(ge=1, le=MAX_TRIALS)  # `seeds: 3`


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

    def base_cfg(self) -> Config:
        return load(list(self.recipes), list(self.overrides))

    def point_cfg(self, point: dict) -> Config:
        """The base config with a point's values, as the space holds them (a YAML null stays
        None, a number the number written)."""
        return derive(self.base_cfg(), values_of(point), source=f"space (trial {trial_name(point)})")

    def trial_cfg(self, point: dict) -> Config:
        """The base config with a trial's values, placed and named as a sweep trial."""
        return derive(self.point_cfg(point), trial_settings(self, point))


def trial_settings(spec: Spec, point: dict) -> dict[str, Any]:
    """What the sweep sets in every trial's config (so a space may not sweep these keys, nor
    an override set the ones that are not its own: check.check_overrides)."""
    return {"run.root": str(spec.root), "run.name": spec.name, "trainer.devices": 1,
            "trainer.num_nodes": 1, "trainer.progress_bar": False,
            "logger.wandb.group": spec.name, "logger.wandb.job_type": "sweep-trial",
            "logger.wandb.name": trial_name(point)}


def grid_points(spec: Spec) -> list[dict]:
    """The grid part of the space (lists, seeds); random keys are drawn by sweep/trials.py."""
    keys = spec.grid_keys() + ["seed"]
    values = [spec.space[k] for k in spec.grid_keys()] + [list(spec.seeds)]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def values_of(point: dict) -> dict[str, Any]:
    """The config keys a point sets (`_sample`, the sample's index, is not one)."""
    return {k: v for k, v in point.items() if not k.startswith("_")}


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
