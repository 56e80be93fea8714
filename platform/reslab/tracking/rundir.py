"""The run- and sweep-directory layout, and the only module that knows their file names:

    <run.root>/<run.name>/<run_id>/
        config.yaml  summary.json  metrics.csv  checkpoints/{last,best}.ckpt  wandb/  .lock
        slurm/{job.sbatch, job_id, log}  samples/ (super-resolution tests)
        export/ (`reslab export`'s default)  compare/ (`reslab compare`'s default, any folder)
    <run.root>/<sweep name>/
        <trial>/ (a run directory)  sweep.csv  best_config.yaml  timing.json  tune/  slurm/

Run ids, paths that cannot escape run.root, finding runs; what a run directory names is read
only inside it. What the files hold is reslab.tracking.records'."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from reslab.config.schema import Config
from reslab.config.validate import check_run_name
from reslab.environment import JOB_ID
from reslab.errors import UserError, reason
from reslab.fileio import write_atomic

# The folders of a run or sweep directory that commands other than training write into
# (reslab.tracking.outputs): `reslab export`'s and `reslab compare`'s, each its own.
EXPORT, COMPARE = "export", "compare"


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
    exports = property(lambda self: self.path / EXPORT)  # `reslab export`'s default folder

    @property
    def weights_ckpt(self) -> Path:
        """best.ckpt, else last.ckpt: the weights to evaluate or to start from. A best.ckpt that
        is there but not a file is refused where it is read, not silently passed over."""
        best = self.best_ckpt
        return best if best.exists() or best.is_symlink() else self.last_ckpt

    def checkpoint_to_read(self, given: Path | None = None) -> Path:
        """`given` (a checkpoint the user named), else weights_ckpt; one sentence if missing."""
        ckpt = Path(given) if given else self.weights_ckpt
        if ckpt.exists() and not ckpt.is_file():
            raise UserError(f"{ckpt} is not a regular file (a folder, FIFO, device or socket); "
                            "move it aside or restore the checkpoint")
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
    timing = property(lambda self: self.path / "timing.json")  # the invocation's time split
    definition = property(lambda self: self.path / "sweep.yaml")  # what the sweep is (resume)
    tune = property(lambda self: self.path / "tune")
    slurm = property(lambda self: self.path / "slurm")
    lock_file = property(lambda self: self.path / ".lock")  # held by the sweep's driver

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
    would be the current folder: `--out ""` wrote the model there; a link to nothing would have
    been written through, creating its target wherever it points, which `cp` refuses too)."""
    if not str(path).strip():
        raise UserError(f"{option} is empty; give a path")
    given = Path(path)
    try:
        if dangling := next((p for p in (given, *given.parents)
                             if p.is_symlink() and not p.exists()), None):
            raise UserError(f"{option} {str(path)!r} goes through {dangling}, a link to "
                            f"{os.readlink(dangling)!r}, which {leads(dangling)}; give a real "
                            "path")
        return given.resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
        raise UserError(f"{option} {str(path)!r} is not a usable path ({reason(e)})") from None


def leads(link: Path) -> str:
    """Where a link that leads nowhere goes: to a missing path, or round in a loop."""
    try:
        link.resolve()
    except RuntimeError:
        return "leads back to itself (a loop)"
    return "does not exist"


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
    root = resolved(cfg.run.root, "run.root")
    path = (root / cfg.run.name / run_id).resolve()
    if root not in path.parents:
        raise UserError(f"run directory {path} would be outside run.root {root}")
    check_outside_records(path.parent, "run.root/run.name")
    check_writable(root, "run.root")
    return path


def check_outside_records(folder: Path, key: str) -> None:
    """A new run or sweep never goes into another run's or sweep's records: neither `folder`
    (resolved) nor a folder above it is a run or a sweep directory. (A sweep's trials are made
    in its folder by the sweep itself, never through here.)"""
    if inside := next((p for p in (folder, *folder.parents) if holds_records(p)), None):
        raise UserError(f"{key} {folder} is inside the records of {inside} (a run or a sweep "
                        "directory); give a folder outside every run and sweep")


def holds_records(folder: Path) -> bool:
    """A run directory (config.yaml, summary.json) or a sweep directory (sweep.csv,
    best_config.yaml, sweep.yaml, tune/)."""
    run, sweep = RunDir(folder), SweepDir(folder)
    try:
        return any(p.is_file() for p in (run.config, run.summary, sweep.results,
                                         sweep.best_config, sweep.definition)) \
            or sweep.tune.is_dir()
    except OSError:  # a folder this user cannot look into holds no records of theirs
        return False


def check_writable(folder: Path, key: str) -> None:
    """`folder` is, or can be created as, a directory this user can write into."""
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}={folder} cannot be a directory: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={folder} is not writable ({existing} belongs to someone else or "
                        "is read-only)")


def find_run(path: str | Path) -> RunDir:
    """A run directory given by the user (resume, test), or a checkpoint inside one. An empty
    one is refused (`--resume ''` was taken as no resume: it trained a new run)."""
    if not str(path).strip():
        raise UserError(f"the run directory given is empty ({str(path)!r}); give one, e.g. "
                        "runs/quickstart/20261122-101500-a1b2c3")
    p = Path(path)
    if p.is_file() and p.parent.name == "checkpoints":
        p = p.parent.parent
    if not is_run_dir(p):
        raise UserError(f"{path} {not_a_run(p)}")
    run = RunDir(p.resolve())
    check_records(run)
    return run


def not_a_run(path: Path) -> str:
    """What `path`, not a run directory, is instead."""
    if not path.exists():
        return "does not exist" + (" (a link to nothing, or a loop)" if path.is_symlink() else "")
    if path.is_file():
        return "is a file, not a run directory (give the folder that holds config.yaml)"
    if not path.is_dir():
        return "is not a run directory (a FIFO, device or socket)"
    return "is not a run directory (no config.yaml in it)"


def sweep_of(run: RunDir) -> Path | None:
    """The sweep directory `run` is a trial of, if it is one."""
    return run.path.parent if holds_records(run.path.parent) else None


def check_records(run: RunDir) -> None:
    """The run's records that exist are regular files inside it: a FIFO would make a read wait
    forever, a link that leads out would read (and rewrite) another place's file."""
    for path in (run.config, run.summary, run.metrics):
        if not path.exists() and not path.is_symlink():
            continue
        if not path.resolve().is_relative_to(run.path):
            raise UserError(f"{path} is a link that leads out of its run directory; a run's "
                            "records are read only inside it: put the file itself there")
        if not path.is_file():
            raise UserError(f"{path} is not a regular file (a folder, FIFO, device or socket); "
                            "move it aside or restore the run's file")
