"""The grouped table: runs grouped by the config keys that vary, mean ± std over seeds with n,
and the paper's Table 6 delta for runs of its CIFAR-10 recipe."""

from __future__ import annotations

import json
import math
import statistics

from reslab.metrics import COLUMNS
from reslab.report.runs import Run

# He et al. 2015, Table 6: CIFAR-10 test error (%) of the residual nets (option A).
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Keys that never define a group: they differ between runs for bookkeeping only.
IGNORED = ("seed", "run.", "logger.", "slurm.", "data.root", "trainer.progress_bar",
           "trainer.devices", "trainer.num_nodes")


def varied_keys(runs: list[Run]) -> list[str]:
    """The config keys whose values differ between runs: what a sweep varied."""
    keys = sorted({k for r in runs for k in r.config})
    out = []
    for k in keys:
        if k.startswith(IGNORED):
            continue
        if len({json.dumps(r.config.get(k)) for r in runs}) > 1:
            out.append(k)
    return out


def group(runs: list[Run], by: list[str]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(hashable(r.config.get(k)) for k in by), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: [sort_key(v) for v in kv[0]]))


def hashable(v):
    """Config values as group keys: lists (data.classes, tags) become tuples."""
    return tuple(hashable(x) for x in v) if isinstance(v, list) else v


def sort_key(v):
    """Numbers in numeric order (5 before 20), before strings."""
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def mean_std(values: list[float]) -> tuple[float, float, int]:
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not values:
        return math.nan, math.nan, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def table(runs: list[Run], by: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the group's keys, n, mean ± std of each metric, params, wall time,
    throughput, and the paper delta where the runs follow the paper's CIFAR-10 recipe."""
    metrics = [m for m in dict.fromkeys([metric, *COLUMNS])
               if any(m in r.summary for r in runs)]
    paper = any(_paper_depth(r) for r in runs)
    header = [*by, "n", "status", *metrics, "params", "wall_s", "images/s"] + (
        ["paper test err %", "delta %"] if paper else [])
    rows = []
    for key, members in group(runs, by).items():
        row = [str(v) for v in key] + [str(len(members)), statuses(members)]
        for m in metrics:
            mu, sd, n = mean_std([r.summary.get(m) for r in members])
            row.append("-" if n == 0 else f"{mu:.4f} ± {sd:.4f}" if n > 1 else f"{mu:.4f}")
        for k in ("params", "wall_s", "images_per_s"):
            mu, _, n = mean_std([r.summary.get(k) for r in members])
            row.append("-" if n == 0 else f"{mu:,.0f}" if k != "wall_s" else f"{mu:.1f}")
        if paper:
            depth = _paper_depth(members[0])
            mu, _, n = mean_std([r.summary.get("test/err") for r in members])
            ref = PAPER_TABLE6.get(depth)
            row += [f"{ref:.2f}" if ref else "-",
                    f"{100 * mu - ref:+.2f}" if ref and n else "-"]
        rows.append(row)
    return header, rows


def statuses(runs: list[Run]) -> str:
    """`completed`, or the count of each status (`2 completed, 1 failed`) when they differ."""
    counts = {}
    for r in runs:
        status = str(r.summary.get("status", "?"))
        counts[status] = counts.get(status, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _paper_depth(run: Run) -> int | None:
    """The depth, if the run is the paper's CIFAR-10 recipe with a residual (option A) net."""
    c = run.config
    if c.get("data.name") == "cifar10" and c.get("optim.schedule") == "paper" \
            and c.get("model.shortcut") in ("A", None) and c.get("model.depth") in PAPER_TABLE6:
        return c["model.depth"]
    return None


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def default_metric(runs: list[Run]) -> str:
    """val/err for classification runs, val/psnr for super-resolution runs."""
    return "val/err" if any("val/err" in r.summary for r in runs) or \
        not any("val/psnr" in r.summary for r in runs) else "val/psnr"
