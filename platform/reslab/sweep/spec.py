"""A sweep spec (sweeps/README.md) read like a recipe (an unknown key or a wrong type is a
sentence) onto its schema (schema.py) and checked as values (check.py), so that every trial is
a valid config before Ray starts; the plan a dry run prints. No Ray here."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import OmegaConf

from reslab.config import domain
from reslab.config import recipes as shipped
from reslab.config.load import merge, read_yaml
from reslab.errors import UserError
from reslab.sweep.check import check_fields, seeds_of, validate_spec
from reslab.sweep.schema import Spec, SpecFile, grid_points, trial_name
from reslab.tracking.rundir import SweepDir, check_outside_records, is_run_dir, resolved

__all__ = ["Spec", "grid_points", "load_spec", "plan", "sweep_dir", "trial_name"]


def load_spec(path: str | Path, overrides: list[str] = (), recipes: list[str] = ()) -> Spec:
    """Read and validate a sweep spec; extra recipes (a cluster profile) and KEY=VALUE
    overrides apply to the base config after the spec's own."""
    data = read_yaml(path, "sweep spec")
    if not isinstance(data.get("space", {}), dict):  # OmegaConf cannot merge it (a TypeError)
        raise UserError(f"space must be a mapping of config key -> list or distribution, got "
                        f"{domain.shown(data['space'])} in {path}")
    if bad := [k for k in data.get("space") or {} if not isinstance(k, str)]:
        raise UserError(f"space key {domain.shown(bad[0])} in {path} is not a config key; keys "
                        "name one, such as model.depth")
    raw = OmegaConf.to_object(merge(OmegaConf.structured(SpecFile), data, source=str(path),
                                    what="sweep key"))
    raw.seeds = seeds_of(raw.seeds)
    check_fields(raw)
    here = Path(path).resolve().parent
    res = raw.resources_per_trial
    spec = Spec(
        name=raw.name or Path(path).stem,
        recipes=tuple(str(_resolve(r, here)) for r in [*raw.base.recipes, *recipes]),
        overrides=(*raw.base.overrides, *overrides), space=dict(raw.space), search=raw.search,
        scheduler=raw.scheduler, metric=raw.metric, mode=raw.mode, num_samples=raw.num_samples,
        seeds=tuple(raw.seeds), cpu=res.cpu, gpu=res.gpu, max_concurrent=raw.max_concurrent,
        max_failures=raw.max_failures, root=Path("."))
    validate_spec(spec, named=raw.name is not None)
    root = resolved(spec.base_cfg().run.root, "run.root")
    check_outside_records(root, "run.root")
    if is_run_dir(root / spec.name):
        raise UserError(f"the sweep folder {root / spec.name} is a run directory; name the "
                        "sweep or its run.root differently")
    return Spec(**{**spec.__dict__, "root": root})


def _resolve(recipe: str, here: Path) -> Path:
    """Recipe paths are relative to the working directory, or else to the spec's folder, or
    else name a shipped recipe (`configs/quickstart.yaml` from an installed package)."""
    p = Path(recipe)
    if p.exists() or p.is_absolute():
        return p.resolve()
    return (here / p).resolve() if (here / p).exists() else Path(shipped.resolve(recipe))


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
