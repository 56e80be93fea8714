"""Runs as tables and figures see them: a run directory's flat config, summary and metric rows
(read through the run-directory contract), found under any mix of run and sweep directories."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reslab.errors import UserError
from reslab.tracking.records import own_file, read_flat_config, read_metrics
from reslab.tracking.rundir import COMPARE, RunDir


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
                out[int(float(r["epoch"]))] = float(r[key])  # 1-based, as the console
        return sorted(out.items())

    def last_row_with(self, prefix: str) -> dict:
        for r in reversed(self.rows):
            vals = {k: float(v) for k, v in r.items() if k.startswith(prefix) and v not in ("", None)}
            if vals:
                return vals
        return {}


def find_runs(dirs: list[str | Path]) -> list[Run]:
    """The runs in (or under) each DIR, each once however often the DIRs name it."""
    found: dict[Path, Path] = {}  # resolved -> as given
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise UserError(f"{d} does not exist")
        for p in [d] if RunDir(d).config.is_file() else sorted(
                p.parent for p in d.rglob(RunDir(d).config.name)
                if "tune" not in p.relative_to(d).parts[:1]):
            found.setdefault(p.resolve(), p)
    runs = [run for p in found.values() if RunDir(p).summary.is_file() if (run := load_run(p))]
    if not runs:
        raise UserError(f"no runs (directories with config.yaml and summary.json) under "
                        f"{', '.join(map(str, dirs))}")
    return runs


def comparison_folder(dirs: list[str | Path]) -> Path:
    """Where `reslab compare DIR ...` writes without --out: inside the first DIR's `compare/`
    folder, a folder named by what was compared — the inputs' names (at most 40 characters)
    and a hash of their resolved paths, sorted — so `compare A` and `compare A B` never write
    into the same folder, and the same comparison run again replaces its own files."""
    paths = sorted(dict.fromkeys(str(Path(d).resolve()) for d in dirs))
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    names = "+".join(re.sub(r"[^\w.,=+-]", "_", Path(p).name) or "root" for p in paths)
    return Path(dirs[0]) / COMPARE / f"{names[:40]}-{digest}"


def load_run(path: Path) -> Run | None:
    """The run, or None with one warning line naming it when its files are damaged: one broken
    run does not stop a comparison of the others."""
    run = RunDir(path)
    try:
        summary = json.loads(own_file(run, run.summary))
        if not isinstance(summary, dict):
            raise ValueError("summary.json is not a mapping")
        return Run(path, read_flat_config(run), summary, read_metrics(run))
    except (OSError, ValueError, KeyError, yaml.YAMLError, csv.Error, UserError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        print(f"warning: skipping {path}: {type(e).__name__}: {why}", file=sys.stderr)
        return None
