"""Compare runs offline: run and sweep directories -> a grouped table (mean ± std over seeds,
n), the paper's Table 6 deltas, and figures (figures.py). The same keys W&B groups by."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reslab.config import flatten
from reslab.errors import UserError

# He et al. 2015, Table 6: CIFAR-10 test error (%) of the residual nets (option A).
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Keys that never define a group: they differ between runs for bookkeeping only.
IGNORED = ("seed", "run.", "logger.", "slurm.", "data.root", "trainer.progress_bar",
           "trainer.devices", "trainer.num_nodes")
COLUMNS = ("train/err", "val/err", "val/err_best", "test/err", "val/psnr", "val/psnr_best",
           "val/psnr_bicubic", "val/psnr_gain", "test/psnr")


def higher_is_better(metric: str) -> bool:
    """Error and loss go down; PSNR, SSIM and accuracy go up."""
    name = metric.rsplit("/", 1)[-1]
    return any(name.startswith(k) for k in ("psnr", "ssim", "acc", "gain"))


@dataclass
class Run:
    path: Path
    config: dict
    summary: dict
    rows: list[dict] = field(default_factory=list)

    def get(self, key: str):
        return self.summary[key] if key in self.summary else self.config.get(key)

    def epochs(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) for every row that logged `key` (epoch-level rows)."""
        out = {}
        for r in self.rows:
            if r.get(key) not in (None, ""):
                out[int(float(r["epoch"])) + 1] = float(r[key])
        return sorted(out.items())

    def last_row_with(self, prefix: str) -> dict:
        for r in reversed(self.rows):
            vals = {k: float(v) for k, v in r.items() if k.startswith(prefix) and v not in ("", None)}
            if vals:
                return vals
        return {}


def find_runs(dirs: list[str | Path]) -> list[Run]:
    runs = []
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise UserError(f"{d} does not exist")
        configs = [d / "config.yaml"] if (d / "config.yaml").is_file() else sorted(
            p for p in d.rglob("config.yaml") if "tune" not in p.relative_to(d).parts[:1])
        for c in configs:
            if (c.parent / "summary.json").is_file():
                runs.append(load_run(c.parent))
    if not runs:
        raise UserError(f"no runs (directories with config.yaml and summary.json) under "
                        f"{', '.join(map(str, dirs))}")
    return runs


def load_run(path: Path) -> Run:
    config = flatten(yaml.safe_load((path / "config.yaml").read_text()) or {})
    summary = json.loads((path / "summary.json").read_text())
    rows = []
    if (path / "metrics.csv").is_file():
        with open(path / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return Run(path, config, summary, rows)


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
        groups.setdefault(tuple(r.config.get(k) for k in by), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: [sort_key(v) for v in kv[0]]))


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
    header = [*by, "n", *metrics, "params", "wall_s", "images/s"] + (
        ["paper test err %", "delta %"] if paper else [])
    rows = []
    for key, members in group(runs, by).items():
        row = [str(v) for v in key] + [str(len(members))]
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


def compare(dirs: list[str], by: list[str] | None = None, metric: str | None = None,
            out: str | Path | None = None) -> dict:
    """Table (printed by the CLI) plus figures and report.html in `out`."""
    from reslab import figures

    runs = find_runs(dirs)
    by = by or varied_keys(runs) or ["model.name"]
    metric = metric or default_metric(runs)
    unknown = [k for k in by if all(k not in r.config for r in runs)]
    if unknown:
        raise UserError(f"--by key '{unknown[0]}' is in no run's config (e.g. model.depth, "
                        "model.shortcut)")
    header, rows = table(runs, by, metric)
    out = Path(out or (Path(dirs[0]) / "compare"))
    out.mkdir(parents=True, exist_ok=True)
    files = figures.write_all(runs, by, metric, out)
    files.append(figures.write_report(out, header, rows, files, by, metric))
    with open(out / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return {"table": format_table(header, rows), "files": files}


def compare_wandb(path: str, by: list[str] | None, metric: str | None) -> dict:
    """Runs from the W&B public API (online): the same table, from W&B configs and summaries."""
    import os
    import socket

    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled"):
        raise UserError(f"--wandb {path} needs W&B online, but WANDB_MODE="
                        f"{os.environ['WANDB_MODE']}; compare the run directories instead")
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=5).close()
    except OSError:
        raise UserError(f"--wandb {path}: W&B is unreachable (no network); compare the run "
                        "directories instead") from None
    import wandb

    runs = [Run(Path(r.id), dict(r.config), dict(r.summary)) for r in wandb.Api().runs(path)]
    if not runs:
        raise UserError(f"no runs in W&B project {path}")
    by = by or varied_keys(runs) or ["model.name"]
    header, rows = table(runs, by, metric or default_metric(runs))
    return {"table": format_table(header, rows), "files": []}
