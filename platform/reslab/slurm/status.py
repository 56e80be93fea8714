"""`reslab status`: the queue state, restarts, progress and log tail of submitted runs."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

from reslab.errors import UserError
from reslab.metrics import BY_TASK
from reslab.tracking.records import read_metrics, read_summary
from reslab.tracking.rundir import RunDir


def submitted_runs(root: Path) -> list[Path]:
    """Run directories under `root` that were submitted to SLURM."""
    return sorted(p.parent.parent for p in Path(root).glob("*/*/slurm/job_id"))


def status_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        run = RunDir(Path(p))
        jid = run.job_id()
        state, n = _scontrol(jid) if jid else ("-", "-")
        s = read_summary(run)
        if "epoch" not in s:  # still in its first attempt's training: its last validation
            s = {**last_validation(run), **s}
        rows.append({"run": str(run.path), "job": jid or "-", "state": state, "restarts": n,
                     "status": s.get("status", "-"), "epoch": s.get("epoch", "-"),
                     "metric": (metric := monitored(s)), "value": s.get(metric, "-"),
                     "log": last_line(run)})
    return rows


def last_line(run: RunDir, window: int = 65536) -> str:
    """The last line of the run's SLURM log, reading at most its last `window` bytes (a log can
    be gigabytes), or why it was not read."""
    try:
        log = run.log()
    except UserError as e:
        return f"(not read: {e})"
    if log is None or not log.is_file():
        return ""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - window))
        lines = f.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def last_validation(run: RunDir) -> dict:
    """The epoch and monitored metric of metrics.csv's last validated row ({} if none, or if
    the file cannot be read): summary.json has them only when an attempt ends."""
    try:
        rows = read_metrics(run)
    except (OSError, UnicodeDecodeError, csv.Error, UserError):
        return {}
    for row in reversed(rows):
        for key in (m.monitor[0] for m in BY_TASK.values()):
            if row.get(key) and (row.get("epoch") or "").isdigit():
                return {"epoch": int(row["epoch"]), key: float(row[key])}
    return {}


def monitored(summary: dict) -> str:
    """The metric the run's task selects checkpoints on (val/err, val/psnr)."""
    keys = [m.monitor[0] for m in BY_TASK.values()]
    return next((k for k in keys if k in summary), keys[0])


def _scontrol(jid: str) -> tuple[str, str]:
    try:
        out = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", "-"
    state = re.search(r"JobState=(\S+)", out)
    n = re.search(r"Restarts=(\d+)", out)
    return (state.group(1) if state else "gone"), (n.group(1) if n else "-")
