"""The trials of a sweep, rebuilt from the spec and the trial directories, never from Ray Tune's
state (which is pickle: restoring it would run whatever a crafted sweep directory holds).

Every grid point is a trial; random keys (distributions) are drawn here, `num_samples` times per
grid point under `search: random`. A trial that already has a directory keeps the values its
config.yaml records (checked against the distribution), so its name, and its directory, stay the
same; a missing one is drawn with an RNG seeded by the sweep, the grid point and the sample
index. No Ray here."""

from __future__ import annotations

import math
import os
import random
from typing import Any

import yaml

from reslab.errors import UserError
from reslab.sweep.spec import Spec, grid_points, trial_name
from reslab.tracking.records import read_flat_config, read_summary
from reslab.tracking.rundir import SweepDir, is_run_dir, runs_in


def random_keys(spec: Spec) -> list[str]:
    return [k for k, v in spec.space.items() if isinstance(v, dict)]


def samples(spec: Spec) -> int:
    return spec.num_samples if spec.search == "random" else 1


def compose(spec: Spec, grid: dict, values: dict, sample: int) -> dict:
    """A trial's point: the space's keys in the spec's order, the seed, the sample index."""
    point = {k: grid[k] if k in grid else values[k] for k in spec.space}
    point["seed"] = grid["seed"]
    if samples(spec) > 1:
        point["_sample"] = sample
    return point


def draw(dist: dict, rng: random.Random) -> Any:
    (kind, args), = dist.items()
    if kind == "choice":
        return rng.choice(list(args))
    lo, hi = args
    if kind == "uniform":
        return rng.uniform(lo, hi)
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.randrange(lo, hi)  # randint: `hi` excluded, as in Ray Tune


def recorded_value(dist: dict, value: Any) -> tuple[bool, Any]:
    """(True, value) when a config.yaml's value is one the distribution could have drawn."""
    (kind, args), = dist.items()
    if kind == "choice":
        match = [a for a in args if _same(a, value)]
        return (True, match[0]) if match else (False, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False, None
    lo, hi = args
    if kind == "randint":
        ok = float(value).is_integer() and lo <= value < hi
        return (True, int(value)) if ok else (False, None)
    return (lo <= value <= hi, value)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same kind (1 and 1.0 are, True and 1 or "1" and 1 are not)."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, number) \
            or not isinstance(b, number):
        return type(a) is type(b) and a == b
    return a == b


def recorded(spec: Spec, out: SweepDir) -> dict[str, dict]:
    """Trial directory name -> the random keys' values its config.yaml records (directories
    whose values the space could not have drawn are left out)."""
    keys = random_keys(spec)
    if not keys or not out.path.is_dir():
        return {}
    found = {}
    for d in runs_in(out.path):  # a trial linked in from elsewhere is not the sweep's
        if d.name == out.tune.name:
            continue
        try:
            flat = read_flat_config(out.trial(d.name))
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            continue
        checked = {k: recorded_value(spec.space[k], flat.get(k)) for k in keys}
        if all(ok for ok, _ in checked.values()):
            found[d.name] = {k: v for k, (_, v) in checked.items()}
    return found


def all_trials(spec: Spec, out: SweepDir) -> list[dict]:
    """Every trial's point, in grid order: recovered from its directory, or drawn anew."""
    found = recorded(spec, out)
    return [recover(spec, grid, i, found) or new_sample(spec, grid, i)
            for grid in grid_points(spec) for i in range(samples(spec))]


def recover(spec: Spec, grid: dict, sample: int, found: dict[str, dict]) -> dict | None:
    """The point of the recorded trial that is sample `sample` of `grid`, if one is (it is
    taken out of `found`)."""
    for name, values in found.items():
        point = compose(spec, grid, values, sample)
        if trial_name(point) == name:
            del found[name]
            return point
    return None


def new_sample(spec: Spec, grid: dict, sample: int) -> dict:
    rng = random.Random(f"{spec.name}/{trial_name(grid)}/{sample}")
    return compose(spec, grid, {k: draw(spec.space[k], rng) for k in random_keys(spec)}, sample)


def check_places(out: SweepDir, points: list[dict]) -> None:
    """Each trial's records are a directory of the sweep directory itself: through a link (to
    another run, or anywhere) a sweep would read that place's records as the trial's, copy its
    config as the best, and train into it."""
    for point in points:
        path = out.trial(trial_name(point)).path
        if path.is_symlink() or os.path.lexists(path) and not path.is_dir():
            kind = "a symbolic link" if path.is_symlink() else "not a directory"
            raise UserError(f"sweep trial {path} is {kind}: a trial's records must be a "
                            f"directory inside {out.path}; move it away, then run the sweep again")


FINISHED = ("completed", "stopped")  # stopped: the scheduler (ASHA) ended it early on purpose


def completed(out: SweepDir, point: dict) -> bool:
    return read_summary(out.trial(trial_name(point))).get("status") in FINISHED


def started(out: SweepDir) -> bool:
    """A sweep ran here: Tune's folder, sweep.csv or a trial directory exists."""
    if not out.path.is_dir():
        return False
    return (os.path.lexists(out.tune) or os.path.lexists(out.results)
            or any(is_run_dir(d) for d in out.path.iterdir()))
