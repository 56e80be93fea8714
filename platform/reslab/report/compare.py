"""`reslab compare`: run and sweep directories (or a W&B project) -> the grouped table, figures,
report.html and table.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from reslab import fileio
from reslab.errors import UserError
from reslab.registry import did_you_mean
from reslab.report import figures, html, wandb_report, wandb_runs
from reslab.report.runs import Run, comparison_folder, find_runs
from reslab.report.table import csv_table, default_metric, format_table, table, varied_keys
from reslab.tracking.outputs import output_path
from reslab.tracking.rundir import COMPARE


def compare(dirs: list[str], by: list[str] | None = None, metric: str | None = None,
            out: str | Path | None = None, force: bool = False) -> dict:
    """Table (printed by the CLI) plus figures and report.html in `out`."""
    runs = find_runs(dirs)
    if out is None:  # a folder of this comparison's own: it replaces only its own files
        return write(runs, by, metric, comparison_folder(dirs), force=True)
    return write(runs, by, metric, out, force)


def write(runs: list[Run], by: list[str] | None, metric: str | None, out: str | Path,
          force: bool = False) -> dict:
    """The grouped table, figures, report.html and table.csv of `runs` in `out`: one path for
    run directories and W&B projects alike. `out` passes the one output rule
    (outputs.output_path); the files are written into a staging folder and moved in when all
    are done, so a failure leaves nothing behind."""
    by = by or varied_keys(runs) or ["model.name"]
    metric = metric or default_metric(runs)
    check_names(runs, by, metric)
    out = output_path(out, "--out", folder=True, force=force, area=COMPARE)
    header, rows = table(runs, by, metric)
    with fileio.writing_to(out, "--out"), fileio.staged_folder(out) as stage:
        files = figures.write_all(runs, by, metric, stage)
        files.append(html.write_report(stage, header, rows, files, by, metric,
                                       figures.run_groups(runs, by)))
        with open(stage / "table.csv", "w", newline="") as f:
            csv.writer(f).writerows(csv_table(runs, by, metric))  # numbers, not the shown text
        files.append(stage / "table.csv")
    return {"table": format_table(header, rows), "files": [out / f.name for f in files],
            "by": by, "metric": metric}


def check_names(runs: list[Run], by: list[str], metric: str) -> None:
    """--by keys that no run's config has and a --metric that no run logged are sentences."""
    keys = sorted({k for r in runs for k in r.config})
    if unknown := [k for k in by if k not in keys]:
        raise UserError(f"--by key '{unknown[0]}' is in no run's config"
                        f"{did_you_mean(unknown[0], keys) or ' (e.g. model.depth, model.shortcut)'}")
    metrics = sorted({k for r in runs for k in r.summary if "/" in k})
    if metric in metrics:
        return
    if any(metric in r.summary for r in runs):
        raise UserError(f"--metric {metric} is not a metric: metrics are split/name keys such "
                        f"as {', '.join(metrics[:4]) or 'val/err'}")
    if not metrics:
        raise UserError(f"--metric {metric}: no run here has recorded a metric yet (still "
                        "in its first attempt, whose summary.json gets them at its end: `reslab "
                        "status RUN` shows its last validation; or stopped before one)")
    raise UserError(f"--metric {metric} is in no run's summary"
                    f"{did_you_mean(metric, metrics) or ' (they have ' + ', '.join(metrics[:8]) + ')'}")


def compare_wandb(path: str, by: list[str] | None = None, metric: str | None = None,
                  out: str | Path | None = None, group: str | None = None,
                  filters: list[str] = (), publish: bool = False, force: bool = False) -> dict:
    """The same table, figures and report from a W&B project's runs (wandb.Api, which honours
    WANDB_BASE_URL), into `out` (default ./compare); `publish` also saves a W&B Report."""
    runs = wandb_runs.fetch(path, group, list(filters))
    result = write(runs, by, metric, "compare" if out is None else out, force)
    if publish:
        entity, project = path.split("/")
        spec = wandb_report.spec(entity, project, result["by"], result["metric"], group, runs)
        result["report_url"] = wandb_report.save(spec)
    return result
