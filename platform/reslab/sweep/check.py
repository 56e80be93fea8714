"""A sweep spec's values, checked before Ray starts and before a dry run prints its plan: every
key against the domain schema.py declares beside it (one walk), then what only the whole spec
shows: space keys that are config keys the sweep does not set itself, distributions that draw
only values a trial can take, every grid point a valid config whose task reports the metric,
trial names that are single safe folder names, a trial count within MAX_TRIALS, and a trial
that fits on some node (else Tune waits forever). A refusal is one sentence. No Ray here."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from reslab import environment
from reslab.config import domain
from reslab.config.load import all_keys, flatten, parse_overrides
from reslab.config.schema import Config
from reslab.config.validate import check_run_name
from reslab.data import task_of
from reslab.errors import UserError
from reslab.metrics import BY_TASK, higher_is_better
from reslab.registry import did_you_mean
from reslab.sweep.schema import (
    DISTRIBUTIONS,
    MAX_TRIALS,
    SEED_COUNT,
    Spec,
    grid_points,
    trial_name,
    trial_settings,
)

FOLDER = domain.Domain(text=domain.NAME)  # a trial's directory name


def check_fields(section: Any, prefix: str = "") -> None:
    """Every key of a spec file (a SpecFile) against the domain its field declares; `space`,
    which declares none, is checked key by key (check_space)."""
    if sentence := domain.first_violation(section, prefix):
        raise UserError(sentence)


def seeds_of(seeds: Any) -> list[int]:
    """`seeds: 3` is seeds 0, 1, 2; a list holds the seeds themselves."""
    def whole(s: Any) -> bool:
        return isinstance(s, int) and not isinstance(s, bool)

    if whole(seeds) and domain.allows(seeds, SEED_COUNT):
        return list(range(seeds))
    if isinstance(seeds, list) and all(whole(s) for s in seeds):
        return seeds
    raise UserError(f"seeds must be a count from 1 to {MAX_TRIALS} or a list of whole numbers, "
                    f"got {domain.shown(seeds)}")


def validate_spec(spec: Spec, named: bool = True) -> None:
    """What the whole spec must be (its keys' domains are checked by check_fields)."""
    check_run_name(spec.name, "name" if named else "the sweep's name (its file's name)")
    check_overrides(spec)
    check_space(spec)
    check_search(spec)
    check_points(spec)


def check_overrides(spec: Spec) -> None:
    """An override of a key the sweep sets in every trial, or of a key its space sweeps, would
    be silently undone: refused (run.root is the sweep's own: it places the sweep directory)."""
    how = {key: f"as {value!r}" for key, value in trial_settings(spec, {}).items()}
    how.update({"seed": "from `seeds:`", "run.name": "from `name:`",
                "logger.wandb.name": "as the trial's name"})
    del how["run.root"]
    for key in flatten(parse_overrides(list(spec.overrides))):
        given = f"override {key}=... (the spec's base.overrides or the command line)"
        if key in spec.space:
            raise UserError(f"{given} has no effect in this sweep: its space sets {key} in every "
                            f"trial; change space.{key} in the spec instead")
        if key in how:
            raise UserError(f"{given} has no effect in a sweep: the sweep sets {key} in every "
                            f"trial ({how[key]}); leave it out")


def check_space(spec: Spec) -> None:
    known, fixed = all_keys(), {*trial_settings(spec, {}), "seed"}
    for key, value in spec.space.items():
        if key not in known:
            raise UserError(f"space key '{key}' is not a config key{did_you_mean(key, known)}")
        if key in fixed:
            raise UserError(f"space.{key} cannot be swept: the sweep sets it in every trial"
                            + (" (give the seeds with `seeds:`)" if key == "seed" else ""))
        if isinstance(value, dict):
            (kind, args), = value.items() if len(value) == 1 else [(None, None)]
            if kind not in DISTRIBUTIONS:
                raise UserError(f"space.{key} must be a list (grid) or one of "
                                f"{', '.join(DISTRIBUTIONS)}, got {domain.shown(value)}")
            check_distribution(key, kind, args)
            if spec.search == "grid" and kind != "choice":
                raise UserError(f"space.{key} is a {kind} distribution: use search: random")
        elif not isinstance(value, list) or not 0 < len(value) <= MAX_TRIALS:
            raise UserError(f"space.{key} must be a list of 1 to {MAX_TRIALS} values or a "
                            f"distribution, got {domain.shown(value)}")


def check_distribution(key: str, kind: str, args: Any) -> None:
    """choice: a non-empty list; uniform, loguniform, randint: [lo, hi] with lo < hi (hi is
    excluded for randint, loguniform needs lo > 0, randint integers)."""
    if kind == "choice":
        if not isinstance(args, list) or not 0 < len(args) <= MAX_TRIALS:
            raise UserError(f"space.{key}: choice takes a list of 1 to {MAX_TRIALS} values, "
                            f"got {domain.shown(args)}")
        return
    number = (int,) if kind == "randint" else (int, float)
    ok = (isinstance(args, list) and len(args) == 2
          and all(isinstance(a, number) and not isinstance(a, bool) and math.isfinite(a)
                  for a in args)
          and args[0] < args[1] and (kind != "loguniform" or args[0] > 0))
    if not ok:
        need = {"randint": "integers", "loguniform": "numbers with 0 < lo"}.get(kind, "numbers")
        raise UserError(f"space.{key}: {kind} takes [lo, hi], {need} and lo < hi, got "
                        f"{domain.shown(args)}")


def check_search(spec: Spec) -> None:
    """Replicates of a grid come from seeds; random search needs something to draw; the trial
    count is at least one (every count and list is) and at most MAX_TRIALS."""
    drawn = [k for k, v in spec.space.items() if isinstance(v, dict)]
    if spec.search == "grid" and spec.num_samples != 1:
        raise UserError("num_samples repeats random search; for replicates of a grid use seeds")
    if spec.search == "random" and not drawn:
        raise UserError("search: random draws from the space's distributions, and it has none; "
                        "use search: grid, or give a key a distribution ({uniform: [lo, hi]}, ...)")
    sizes = [len(spec.space[k]) for k in spec.grid_keys()] + [len(spec.seeds), spec.num_samples]
    if (n := math.prod(sizes)) > MAX_TRIALS:
        raise UserError(f"the sweep has {n} trials ({' x '.join(map(str, sizes))}: grid axes, "
                        f"seeds, samples); at most {MAX_TRIALS} are allowed")


def check_points(spec: Spec) -> None:
    """Every grid point (once, the seeds aside: they are checked by their domain) is a valid
    config whose task reports the metric; every value a distribution can draw is valid with the
    first point (a trial's real draws are checked again before Ray starts); every trial's name
    is a folder name of its own."""
    combos = grid_points(dataclasses.replace(spec, seeds=spec.seeds[:1]))
    for point in combos:
        check_config(spec, spec.point_cfg(point))
        check_folder(point)
    for key, dist in spec.space.items():
        if isinstance(dist, dict):
            for drawn in extremes(dist):
                point = {k: drawn if k == key else combos[0][k] for k in [*spec.space, "seed"]
                         if k == key or k in combos[0]}
                try:
                    spec.point_cfg(point)
                except UserError as e:
                    raise UserError(f"space.{key}: {next(iter(dist))} can draw "
                                    f"{domain.shown(drawn)}, which a trial cannot take: "
                                    f"{e}") from None
                check_folder(point)
    check_names(grid_points(spec))


def check_names(points: list[dict]) -> None:
    """Each trial has a directory of its own: no value repeated, and no two values that its
    name (4 significant digits of a number) cannot tell apart."""
    seen: dict[str, dict] = {}
    for point in points:
        name = trial_name(point)
        if name not in seen:
            seen[name] = point
        elif seen[name] == point:
            raise UserError(f"the sweep has trial {name} twice (a value repeated in space or "
                            "seeds); each trial needs a directory of its own")
        else:
            a, b = (", ".join(f"{k}={v!r}" for k, v in p.items() if seen[name][k] != point[k])
                    for p in (seen[name], point))
            raise UserError(f"trials {a} and {b} would share the directory {name}: a trial's "
                            "name keeps 4 significant digits of a number; make the values "
                            "differ within them")


def extremes(dist: dict) -> list:
    """The values that stand for everything a distribution draws: each choice; the ends of a
    range, as the kind of number drawn (uniform draws floats, randint integers below hi)."""
    (kind, args), = dist.items()
    if kind == "choice":
        return list(args)
    lo, hi = args
    return [lo, hi - 1] if kind == "randint" else [float(lo), float(hi)]


def check_config(spec: Spec, cfg: Config) -> None:
    """The metric is one the trial's task reports to Tune at each validation (test metrics come
    after the last), in the direction `mode` says; ASHA's grace period fits in the epochs."""
    environment.wandb_mode(cfg.logger.wandb.mode)  # else every trial fails on it
    metrics = BY_TASK[task_of(cfg.data.name)]
    reported = [k for k in metrics.summary if not k.startswith("test/")]
    if spec.metric not in reported:
        raise UserError(f"metric {domain.shown(spec.metric)} is not one the "
                        f"{task_of(cfg.data.name)} task (data.name={cfg.data.name}) reports at "
                        f"each validation; use one of {', '.join(reported)}"
                        f"{did_you_mean(spec.metric, reported)}")
    want = "max" if higher_is_better(spec.metric) else "min"
    if spec.mode != want:
        raise UserError(f"mode: {spec.mode} would pick the worst trial: {spec.metric} is better "
                        f"when {'higher' if want == 'max' else 'lower'}; use mode: {want}")
    s = spec.scheduler
    if s.name == "asha" and s.grace_period > cfg.trainer.max_epochs:
        raise UserError(f"scheduler.grace_period={s.grace_period} is more than "
                        f"trainer.max_epochs={cfg.trainer.max_epochs}: ASHA would never stop a "
                        "trial; lower it")


def check_folder(point: dict) -> None:
    name = trial_name(point)
    if sentence := domain.check("a trial's folder name", name, FOLDER):
        raise UserError(f"{sentence}: the space's values name each trial's directory, so they "
                        "hold no '/', control characters or very long text")


def check_resources(spec: Spec, nodes: list[dict], where: str) -> None:
    """A trial needs one node with its CPUs and GPUs: for a trial that fits on none, Tune waits
    forever (its warning is below the log level reslab gives Ray)."""
    if any(n.get("CPU", 0) >= spec.cpu and n.get("GPU", 0) >= spec.gpu for n in nodes):
        return
    has = ", ".join(f"cpu={n.get('CPU', 0):g} gpu={n.get('GPU', 0):g}" for n in nodes[:4])
    raise UserError(f"resources_per_trial asks cpu={spec.cpu:g} gpu={spec.gpu:g} per trial, "
                    f"more than {where} has ({has or 'no nodes'}); lower it, or run the sweep "
                    "where a node has them (--cpus N, or --address of a Ray cluster)")
