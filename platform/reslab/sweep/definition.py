"""What a sweep is, recorded in its directory (sweep.yaml) when it first runs: the space, the
seeds, the search, the scheduler, the metric and the base config every trial starts from.
`--resume` continues that sweep: a spec that differs in anything but the resources,
concurrency and retries, or how the trials compute and log (RESUMABLE_IN_SWEEP), is refused
before Ray starts (else new trials would train another experiment beside the old ones, and the
table would mix them). No Ray here."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from reslab.config.load import dump, flatten, to_dict
from reslab.errors import UserError, reason
from reslab.fileio import write_atomic
from reslab.run.resuming import RESUMABLE
from reslab.sweep.schema import Spec
from reslab.tracking.records import covered, own_file
from reslab.tracking.rundir import SweepDir


def definition(spec: Spec) -> dict[str, Any]:
    """The flat keys that make the sweep the experiment it is."""
    base = to_dict(spec.base_cfg())
    del base["run"]["root"]  # where the sweep is, not what it is (it may move, or be spelt anew)
    return yaml.safe_load(dump(flatten({
        "space": spec.space, "space_keys": list(spec.space),  # the order names the trials
        "seeds": list(spec.seeds), "search": spec.search,
        "num_samples": spec.num_samples, "scheduler": dataclasses.asdict(spec.scheduler),
        "metric": spec.metric, "mode": spec.mode, "base": base})))


def recorded(out: SweepDir) -> dict[str, Any] | None:
    """sweep.yaml's keys; None for a sweep that recorded none (one run by an older reslab)."""
    path = out.definition
    if not os.path.lexists(path):
        return None
    try:
        data = yaml.safe_load(own_file(out, path))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path} cannot be read ({reason(e)}); it records what the sweep is: "
                        "restore it, or move it aside to continue with this spec") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged (not a mapping); restore it, or move it aside to "
                        "continue with this spec")
    return data


def check_same_sweep(spec: Spec, out: SweepDir) -> None:
    """A resumed sweep's spec is the one it was started with, but for what a resume may change."""
    old = recorded(out)
    if old is None:
        return
    new = definition(spec)
    for key in sorted(set(old) | set(new)):
        if not same(key, old.get(key), new.get(key), spec.search) and not resumable(key):
            raise UserError(f"sweep --resume cannot change {key.removeprefix('base.')} "
                            f"({old.get(key)} -> "
                            f"{new.get(key)}): a resume continues the sweep in {out.path} as "
                            f"it was started (its sweep.yaml); give the sweep another name to "
                            "run that as a new one")


def same(key: str, old: Any, new: Any, search: str) -> bool:
    """A grid's values in another order are the same trials (a random search draws its values
    in the order of the grid's points: there the order matters)."""
    if search == "grid" and key.startswith("space.") and isinstance(old, list) and \
            isinstance(new, list):
        return sorted(map(repr, old)) == sorted(map(repr, new))
    return old == new


# What a sweep's resume may change in the base config: what a run's resume may, but for how
# long and at which rate it trains (a run's resume may change those: in a sweep, the trials that
# start after it would be another experiment than those that finished).
RESUMABLE_IN_SWEEP = tuple(k for k in RESUMABLE if k not in (
    "trainer.max_epochs", "trainer.max_steps", "optim.lr", "optim.backbone_lr_mult"))


def resumable(key: str) -> bool:
    return key.startswith("base.") and covered(key[len("base."):], RESUMABLE_IN_SWEEP)


def write_definition(spec: Spec, out: SweepDir) -> None:
    write_atomic(out.definition, dump(definition(spec), sort_keys=True))
