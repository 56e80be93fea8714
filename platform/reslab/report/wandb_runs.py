"""Runs from a W&B project as `reslab compare` sees them: each W&B run's flat config, summary and
history rows become a `Run`, so the table, figures and report are the offline compare's.

The whole W&B surface used: `wandb.Api(timeout=...)`, `api.runs(path, filters=...)` and, per
run, `id`, `name`, `group`, `config`, `summary_metrics` and `scan_history(page_size=...)`.
`wandb.Api` reads WANDB_BASE_URL (a self-hosted server) and WANDB_API_KEY itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reslab.errors import UserError, reason
from reslab.metrics import csv_row
from reslab.report.runs import Run

TIMEOUT_S = 30


def fetch(path: str, group: str | None = None, filters: list[str] = ()) -> list[Run]:
    """The project's runs (of one group), those matching every KEY=VALUE filter."""
    check_path(path)
    wanted = parse_filters(filters)
    try:
        import wandb

        api = wandb.Api(timeout=TIMEOUT_S)
        found = api.runs(path, filters={"group": group} if group else None)
        runs = [to_run(r) for r in found]
    except Exception as e:  # noqa: BLE001 - network, authentication, unknown project: a sentence
        raise UserError(f"--wandb {path}: could not read the runs from W&B ({reason(e)}); check "
                        "the network, WANDB_BASE_URL and WANDB_API_KEY, or compare the run "
                        "directories instead") from None
    runs = [r for r in runs if all(matches(r, k, v) for k, v in wanted)]
    if not runs:
        where = f" in group {group}" if group else ""
        where += f" matching {', '.join(filters)}" if filters else ""
        raise UserError(f"no runs in W&B project {path}{where}")
    return runs


def check_path(path: str) -> None:
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--wandb must be ENTITY/PROJECT (e.g. my-team/reslab), got {path!r}")


def parse_filters(filters: list[str]) -> list[tuple[str, Any]]:
    out = []
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise UserError(f"--filter must look like KEY=VALUE (e.g. model.depth=56), got {f!r}")
        out.append((key, yaml.safe_load(value) if value else ""))
    return out


def matches(run: Run, key: str, value: Any) -> bool:
    have = run.get(key)
    return have == value or str(have) == str(value)


def to_run(r) -> Run:
    """One W&B run as a `Run`: W&B's bookkeeping keys (`_step`, `_wandb`) dropped, a metric
    W&B summarises as {min|max, last} read as its last value, as summary.json has it."""
    config = {k: unwrap(v) for k, v in dict(r.config).items() if not k.startswith("_")}
    summary = {k: last_of(v) for k, v in dict(r.summary_metrics).items() if not k.startswith("_")}
    rows = [row_of(h) for h in r.scan_history(page_size=1000)]
    return Run(Path(f"wandb:{r.id}"), config, summary, [row for row in rows if row])


def unwrap(v: Any) -> Any:
    """Config values as the API may return them: {'value': v, 'desc': ...} or v."""
    return v["value"] if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} else v


def last_of(v: Any) -> Any:
    return v["last"] if isinstance(v, dict) and "last" in v else v


def row_of(h: dict) -> dict:
    """A history row as metrics.csv has it: step, epoch and the `split/name` metrics."""
    step = h.get("trainer/global_step")
    metrics = {k: v for k, v in h.items() if "/" in k and k != "trainer/global_step"
               and isinstance(v, (int, float))}
    if step is None or not metrics:
        return {}
    return csv_row({**metrics, "epoch": h.get("epoch")}, int(step))
