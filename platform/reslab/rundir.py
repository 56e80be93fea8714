"""The run-directory contract, and the only module that knows its file names:

    <run.root>/<run.name>/<run_id>/
        config.yaml  summary.json  metrics.csv  checkpoints/{last,best}.ckpt  wandb/
        slurm/{job.sbatch, job_id, log}
    <run.root>/<sweep name>/
        <trial>/ (a run directory)  sweep.csv  best_config.yaml  tune/

Run ids, paths that cannot escape run.root, config and summary I/O (atomic, secrets redacted);
what a run directory names is read only inside it."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reslab.config.load import flatten, load, to_dict
from reslab.config.schema import Config
from reslab.config.validate import check_run_name
from reslab.errors import UserError, reason
from reslab.fileio import write_atomic
from reslab.redaction import redact, redact_overrides

JOB_ID = re.compile(r"\d+(_\d+)?")  # a SLURM job, or an array job's task (123_4)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.yaml")
    summary = property(lambda self: self.path / "summary.json")
    metrics = property(lambda self: self.path / "metrics.csv")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_ckpt = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    best_ckpt = property(lambda self: self.path / "checkpoints" / "best.ckpt")
    slurm = property(lambda self: self.path / "slurm")
    lock_file = property(lambda self: self.path / ".lock")
    job_id_file = property(lambda self: self.path / "slurm" / "job_id")
    log_pointer = property(lambda self: self.path / "slurm" / "log")
    samples = property(lambda self: self.path / "samples")  # super-resolution test images

    @property
    def weights_ckpt(self) -> Path:
        """best.ckpt, else last.ckpt: the weights to evaluate or to start from."""
        return self.best_ckpt if self.best_ckpt.is_file() else self.last_ckpt

    def checkpoint_to_read(self, given: Path | None = None) -> Path:
        """`given` (a checkpoint the user named), else weights_ckpt; one sentence if missing."""
        ckpt = Path(given) if given else self.weights_ckpt
        if not ckpt.is_file():
            raise UserError(f"{given or self.path} holds no checkpoint (checkpoints/best.ckpt or "
                            "last.ckpt); train or resume the run first")
        return ckpt

    def job_id(self) -> str | None:
        """The SLURM job (or array task) this run was submitted as; None when it was not, or
        when slurm/job_id holds anything but a job id (it goes on scontrol's command line)."""
        text = read_pointer(self.job_id_file)
        return text if text and JOB_ID.fullmatch(text) else None

    def log(self) -> Path | None:
        """The SLURM log of the run's job: the file slurm/log names, and only where submission
        puts logs, the run's slurm/ folder or its array's folder beside it (array-<id>/). A
        crafted run directory naming /etc/shadow made `reslab status` print a line of it:
        what a run directory names is read only inside it."""
        if (text := read_pointer(self.log_pointer)) is None:
            return None
        log = resolved(text, str(self.log_pointer))
        places = [self.slurm.resolve(), *self.path.parent.resolve().glob("array-*")]
        if not any(place in log.parents for place in places):
            raise UserError(f"{self.log_pointer} names {log}, outside the run's slurm/ folder "
                            "and its array's folder; not read")
        return log

    def record_job(self, job_id: str, log: str) -> None:
        self.slurm.mkdir(parents=True, exist_ok=True)
        write_atomic(self.job_id_file, job_id + "\n")
        write_atomic(self.log_pointer, log + "\n")


@dataclass(frozen=True)
class SweepDir:
    path: Path

    results = property(lambda self: self.path / "sweep.csv")
    best_config = property(lambda self: self.path / "best_config.yaml")
    tune = property(lambda self: self.path / "tune")
    slurm = property(lambda self: self.path / "slurm")

    def trial(self, name: str) -> RunDir:
        return RunDir(self.path / name)


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def read_pointer(path: Path) -> str | None:
    """A one-line file a run directory keeps (slurm/job_id, slurm/log), or None: at most 4 KiB
    of it (a FIFO or a device is not a file and is not opened)."""
    if not path.is_file():
        return None
    with open(path, errors="replace") as f:
        return f.read(4096).strip() or None


def resolved(path: str | Path, option: str) -> Path:
    """A path the user gave, absolute with its links resolved, or one sentence (an empty one
    would be the current folder: `--out ""` wrote the model there)."""
    if not str(path).strip():
        raise UserError(f"{option} is empty; give a path")
    try:
        return Path(path).resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
        raise UserError(f"{option} {str(path)!r} is not a usable path ({reason(e)})") from None


def runs_in(folder: Path) -> list[Path]:
    """The run directories directly in `folder` (a run-name folder, a sweep), sorted. A link
    that leads out of `folder` is not one of them: what a folder lists is read inside it."""
    base = folder.resolve()
    return [d for d in sorted(folder.iterdir()) if is_run_dir(d) and d.resolve().parent == base]


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_path(cfg: Config, run_id: str) -> Path:
    """<run.root>/<run.name>/<run_id>, refusing anything that would land outside run.root."""
    check_run_name(cfg.run.name)
    root = Path(cfg.run.root).resolve()
    path = (root / cfg.run.name / run_id).resolve()
    if root not in path.parents:
        raise UserError(f"run directory {path} would be outside run.root {root}")
    check_writable(root, "run.root")
    return path


def check_writable(folder: Path, key: str) -> None:
    """`folder` is, or can be created as, a directory this user can write into."""
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}={folder} cannot be a directory: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={folder} is not writable ({existing} belongs to someone else or "
                        "is read-only)")


def open_run(cfg: Config, run_id: str | None = None) -> RunDir:
    """Create the run directory and write its resolved, redacted config.yaml."""
    run = RunDir(run_path(cfg, run_id or new_run_id()))
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    write_config(run, cfg)
    return run


def write_config(run: RunDir, cfg: Config) -> None:
    write_atomic(run.config, yaml.safe_dump(redact(to_dict(cfg)), sort_keys=False))


def begin_attempt(run: RunDir, cfg: Config, overrides: list[str], resumed_at: int | None) -> None:
    """An attempt (the first, a `--resume`, a requeued job, a retried trial) starts training in
    `run`: config.yaml becomes the config it trains with, so the directory always says how the
    run was trained, and summary.json's `attempts` gets what this one changed."""
    write_config(run, cfg)
    summary = read_summary(run)
    attempt = {"started": now(), "overrides": redact_overrides(overrides),
               "resumed_at_step": resumed_at}
    write_summary(run, {**summary, "attempts": [*summary.get("attempts", []), attempt]})


def record_test(summary: dict, ckpt: Path | None, step: int | None, by: str,
                overrides: list[str], metrics: dict) -> dict:
    """Append one test to summary.json's `tests` (the end of training's, `by: train`, and each
    `reslab test`'s): when, which checkpoint at which step, with which overrides, what it
    measured. The top-level test/* keys are the end of training's alone (DESIGN §3)."""
    entry = {"time": now(), "by": by, "checkpoint": ckpt.name if ckpt else None,
             "global_step": step, "overrides": redact_overrides(overrides), "metrics": metrics}
    summary["tests"] = [*summary.get("tests", []), entry]
    return summary


def now() -> str:
    """ISO 8601 to the second, with the UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def config_changes(run: RunDir, cfg: Config, allowed: tuple[str, ...]) -> list[tuple]:
    """(key, recorded, new) for each flat key where `cfg` differs from the run's config.yaml,
    but for the `allowed` keys (a key, or a section's prefix ending in ".")."""
    recorded, new = (flatten(to_dict(c)) for c in (load([run.config]), cfg))
    return [(k, recorded.get(k), v) for k, v in new.items()
            if v != recorded.get(k) and not covered(k, allowed)]


def covered(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


@contextlib.contextmanager
def locked(run: RunDir):
    """Held by every process that writes a run's records: training in it (a requeued job whose
    old attempt still runs, two `--resume`), `reslab test`, an export into it. A second one is
    refused, naming the holder. The kernel releases the lock when the holder dies, however it
    dies."""
    try:
        f = open(run.lock_file, "a+")
    except OSError as e:  # a read-only run directory, a .lock that is not a file
        raise UserError(f"run directory {run.path} cannot be written ({run.lock_file.name}: "
                        f"{e.strerror or e}); give it back its write permission") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(f"run directory {run.path} is in use by {holder}; wait for it to "
                            "finish (or stop it), then try again") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        f.close()


def find_run(path: str | Path) -> RunDir:
    """A run directory given by the user (resume, test), or a checkpoint inside one."""
    p = Path(path)
    if p.is_file() and p.parent.name == "checkpoints":
        p = p.parent.parent
    if not is_run_dir(p):
        raise UserError(f"{path} is not a run directory (no config.yaml in it)")
    return RunDir(p.resolve())


def read_summary(run: RunDir) -> dict:
    """summary.json for reading (status, compare, a weights folder): {} when it is missing or
    damaged. What rewrites it reads it with checked_summary."""
    try:
        summary = json.loads(run.summary.read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def checked_summary(run: RunDir) -> dict:
    """summary.json for a command that rewrites it (resume, test): {} when the run has none
    yet; refused, not silently replaced, when it is damaged (it holds the run's history)."""
    try:
        summary = json.loads(run.summary.read_text()) if run.summary.exists() else {}
    except (OSError, ValueError) as e:
        raise UserError(f"{run.summary} cannot be read ({reason(e)}); move it aside to continue "
                        "without the run's record, or restore it") from None
    if not isinstance(summary, dict):
        raise UserError(f"{run.summary} is damaged (a JSON {type(summary).__name__}, not an "
                        "object); move it aside to continue without the run's record, or "
                        "restore it")
    return summary


def write_summary(run: RunDir, summary: dict) -> None:
    write_atomic(run.summary, json.dumps(redact(summary), indent=2, sort_keys=True) + "\n")


def read_flat_config(run: RunDir) -> dict[str, Any]:
    """config.yaml as flat keys (`model.depth`): what tables group by."""
    return flatten(yaml.safe_load(run.config.read_text()) or {})


def read_metrics(run: RunDir, up_to_step: int | None = None) -> list[dict]:
    """metrics.csv rows (strings, as written), optionally only those up to a step."""
    if not run.metrics.is_file():
        return []
    with open(run.metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows if up_to_step is None else [r for r in rows if int(r["step"]) <= up_to_step]
