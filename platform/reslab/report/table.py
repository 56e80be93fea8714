"""The grouped table: runs grouped by the config keys that vary, mean ± std over seeds with n,
and the paper's Table 6 delta for runs of its CIFAR-10 recipe."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass

from reslab.errors import escaped
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


def finite(v) -> bool:
    """A number a mean can take: not NaN or Inf, and not an int too large for a float (a
    summary.json may hold any JSON number: 10**400 was an OverflowError)."""
    try:
        return isinstance(v, (int, float)) and math.isfinite(v)
    except OverflowError:
        return False


def mean_std(values: list[float]) -> tuple[float, float, int]:
    values = [v for v in values if finite(v)]
    if not values:
        return math.nan, math.nan, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


@dataclass(frozen=True)
class Stat:
    """A metric over a group's runs: mean, standard deviation (None for one run) and n."""
    mean: float
    std: float | None
    n: int


def values(runs: list[Run], by: list[str], metric: str) -> tuple[list[str], list[list]]:
    """Header and rows as values: the group's keys (config values), n, status, a Stat per
    metric, params, wall time, throughput, and the paper's Table 6 error and the delta (%) where
    the runs follow the paper's CIFAR-10 recipe; None where nothing was logged."""
    metrics = [m for m in dict.fromkeys([metric, *COLUMNS])
               if any(m in r.summary for r in runs)]
    paper = any(_paper_depth(r) for r in runs)
    header = [*by, "n", "status", *metrics, *RUN_KEYS] + (list(PAPER_KEYS) if paper else [])
    rows = []
    for key, members in group(runs, by).items():
        row = [*key, len(members), statuses(members)]
        row += [stat([r.summary.get(m) for r in members]) for m in metrics]
        row += [mean_or_none([r.summary.get(k) for r in members]) for k in RUN_KEYS]
        if paper:
            ref = PAPER_TABLE6.get(_paper_depth(members[0]))
            mu = mean_or_none([r.summary.get("test/err") for r in members])
            row += [ref, 100 * mu - ref if ref and mu is not None else None]
        rows.append(row)
    return header, rows


RUN_KEYS = ("params", "wall_s", "images_per_s")
PAPER_KEYS = ("paper_test_err_pct", "delta_pct")
# The printed, Markdown and HTML table's names for the columns that are not metric keys.
SHOWN_NAMES = {"images_per_s": "images/s", "paper_test_err_pct": "paper test err %",
               "delta_pct": "delta %"}


def stat(values: list) -> Stat | None:
    mu, sd, n = mean_std(values)
    return Stat(mu, sd if n > 1 else None, n) if n else None


def mean_or_none(values: list) -> float | None:
    mu, _, n = mean_std(values)
    return mu if n else None


def table(runs: list[Run], by: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """The table as it is read (printed, report.html): `0.0720 ± 0.0100`, `75,002`, `-`."""
    header, rows = values(runs, by, metric)
    return [SHOWN_NAMES.get(h, h) for h in header], [[shown(h, v) for h, v in zip(header, r)]
                                                     for r in rows]


CELL = 80  # characters of a table cell


def decimals(x: float) -> str:
    """A metric to four decimals; one no metric reaches (1e308 in a damaged summary.json) in
    scientific notation, not 309 digits."""
    return f"{x:.4f}" if abs(x) < 1e9 else f"{x:.4g}"


def shown(column: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, Stat):
        return decimals(v.mean) if v.std is None else f"{decimals(v.mean)} ± {decimals(v.std)}"
    if column in ("params", "images_per_s"):
        return f"{v:,.0f}"
    if column == "wall_s":
        return f"{v:.1f}"
    return f"{v:.2f}" if column == PAPER_KEYS[0] else f"{v:+.2f}" if column == PAPER_KEYS[1] \
        else str(v)


def csv_table(runs: list[Run], by: list[str], metric: str) -> list[list]:
    """table.csv's rows, header first: numbers as numbers (a metric as its mean, `<key>_std`
    and `<key>_n` beside it), so pandas or a spreadsheet reads them as numbers; nothing
    logged is an empty cell."""
    header, rows = values(runs, by, metric)
    out = [[c for h in header for c in ([h, f"{h}_std", f"{h}_n"] if "/" in h else [h])]]
    for row in rows:
        out.append([c for h, v in zip(header, row) for c in
                    (([v.mean, v.std, v.n] if v else ["", "", 0]) if "/" in h else
                     ["" if v is None else v])])
    return out


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
    """Aligned columns; a control character in a cell (an escape sequence in a damaged
    summary.json) is shown escaped, never sent to the terminal, and a cell at most CELL wide."""
    header, rows = [escaped(h, CELL) for h in header], [[escaped(c, CELL) for c in r]
                                                        for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def default_metric(runs: list[Run]) -> str:
    """val/err for classification runs, val/psnr for super-resolution runs."""
    return "val/err" if any("val/err" in r.summary for r in runs) or \
        not any("val/psnr" in r.summary for r in runs) else "val/psnr"
