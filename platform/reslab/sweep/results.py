"""A sweep's results: sweep.csv (a row per trial), best_config.yaml, and the printed table, in
grid order (the variants of one depth side by side)."""

from __future__ import annotations

import shutil

from reslab.fileio import write_csv
from reslab.metrics import COLUMNS
from reslab.report.table import format_table as aligned
from reslab.report.table import sort_key
from reslab.rundir import SweepDir, read_summary
from reslab.sweep.spec import Spec, trial_name

RESULT_KEYS = ("train/loss", *COLUMNS)  # the columns `reslab compare` shows, and the loss


def write_results(spec: Spec, out: SweepDir, points: list[dict], results: dict) -> list[dict]:
    """sweep.csv, best_config.yaml and the rows for the printed table: a row per trial in
    `points`, from its summary.json and, for the trials this run gave Tune, Tune's result
    (`results`: trial name -> Result; a trial a resumed sweep did not rerun has none)."""
    rows = []
    for point in points:
        name = trial_name(point)
        r = results.get(name)
        error = r.error if r is not None else None
        summary = read_summary(out.trial(name))
        row = {"trial": name, **{k: v for k, v in point.items() if not k.startswith("_")},
               "status": "ERROR" if error else summary.get("status", "stopped"),
               **{k: v for k in RESULT_KEYS
                  if (v := summary.get(k, ((r and r.metrics) or {}).get(k))) is not None},
               "epoch": summary.get("epoch"), "wall_s": summary.get("wall_s"),
               "error": _sentence(error) if error else ""}
        rows.append(row)
    rows.sort(key=lambda r: [sort_key(r.get(k)) for k in spec.grid_keys()] + [r["trial"]])
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(out.results, columns, rows)
    scored = [r for r in rows if isinstance(r.get(spec.metric), (int, float))]
    if scored:
        pick = min if spec.mode == "min" else max
        best = pick(scored, key=lambda r: r[spec.metric])
        shutil.copyfile(out.trial(best["trial"]).config, out.best_config)
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
