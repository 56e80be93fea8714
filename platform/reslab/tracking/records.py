"""What a run directory holds, read and written: config.yaml (resolved, secrets redacted; each
attempt rewrites it), summary.json (its attempts and tests; read leniently for display,
strictly before a rewrite), metrics.csv rows, the lock every writer holds, and the checkpoint a
`model.weights` value names. File names are reslab.tracking.rundir's."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reslab.config.load import dump, flatten, load, to_dict
from reslab.config.schema import Config
from reslab.errors import UserError, escaped, reason
from reslab.fileio import naming, read_regular, write_atomic
from reslab.tracking.redaction import redact, redact_overrides
from reslab.tracking.rundir import RunDir, SweepDir, is_run_dir, new_run_id, run_path, runs_in


def open_run(cfg: Config, run: RunDir | None = None) -> RunDir:
    """Create the run directory (a new one in run.root/run.name, or `run`: a job's that submit
    placed, a sweep's trial) and write its resolved, redacted config.yaml."""
    run = run or RunDir(run_path(cfg, new_run_id()))
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    write_config(run, cfg)
    return run


def write_config(run: RunDir, cfg: Config) -> None:
    write_atomic(run.config, dump(redact(to_dict(cfg)), sort_keys=False))


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
def locked(run: RunDir | SweepDir, wait: float = 0.0):
    """Held by every process that writes a run's records: training in it (a requeued job whose
    old attempt still runs, two `--resume`), `reslab test`, an export into it; and by a sweep's
    driver over its sweep directory. A second one is refused, naming the holder (after polling
    for up to `wait` seconds). The kernel releases the lock when the holder dies, however it
    dies. A refusal inside (UserError: a resume that cannot be honoured, a checkpoint that does
    not fit) leaves the lock file as it was, or removes the one it made: refused input writes
    nothing."""
    existed = run.lock_file.exists()
    f = _acquire(run, wait)
    try:
        f.seek(0)
        previous = f.read()
        f.truncate(0)  # append mode: the write goes to the end, now the start
        with naming(run.lock_file):
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        try:
            yield
        except UserError:
            if existed:
                f.truncate(0)
                f.write(previous)
            else:  # one waiting on this file finds it gone once it holds it, and opens anew
                run.lock_file.unlink(missing_ok=True)
            raise
    finally:
        f.close()


def _acquire(run: RunDir | SweepDir, wait: float):
    """The lock file, open and locked: the one at its path when the lock was taken (a refused
    holder may have removed the file another process was waiting on)."""
    what = "sweep directory" if isinstance(run, SweepDir) else "run directory"
    deadline = time.monotonic() + wait
    while True:
        try:
            f = open(run.lock_file, "a+b", buffering=0)  # unbuffered: a full disk fails the write
        except OSError as e:  # a read-only run directory, a .lock that is not a file
            raise UserError(f"{what} {run.path} cannot be written ({run.lock_file.name}: "
                            f"{e.strerror or e}); give it back its write permission") from None
        while not _try_flock(f):
            if time.monotonic() >= deadline:
                with f:
                    raise in_use(run, f)
            time.sleep(0.1)
        try:
            if os.stat(run.lock_file).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()


def _try_flock(f, how: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(f, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def check_free(run: RunDir | SweepDir) -> None:
    """What `locked` would refuse, found without writing (a dry run): the lock is held."""
    try:
        f = open(run.lock_file, "rb")
    except OSError:  # no .lock: never held; one that cannot be read: `locked` says so
        return
    with f:
        if not _try_flock(f, fcntl.LOCK_SH):
            raise in_use(run, f)


def in_use(run: RunDir | SweepDir, lock) -> UserError:
    """The refusal of a second process, naming the holder the lock file names."""
    what = "sweep directory" if isinstance(run, SweepDir) else "run directory"
    lock.seek(0)
    holder = lock.read(4096).decode(errors="replace").strip() or "another process"
    return UserError(f"{what} {run.path} is in use by {holder}; wait for it to finish (or stop "
                     "it), then try again")


def own_file(run: RunDir | SweepDir, path: Path) -> bytes:
    """One of the run's records (summary.json, config.yaml, metrics.csv): a regular file inside
    the run directory. A link that leads out of it, a FIFO or a device is not read (OSError):
    what a run directory holds is read inside it."""
    if not path.resolve().is_relative_to(run.path.resolve()):
        raise OSError(errno.EXDEV, f"a link that leads out of the run directory ({path.name})")
    return read_regular(path)


def read_summary(run: RunDir) -> dict:
    """summary.json for reading (status, compare, a weights folder): {} when it is missing or
    damaged. What rewrites it reads it with checked_summary."""
    try:
        summary = json.loads(own_file(run, run.summary))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def checked_summary(run: RunDir) -> dict:
    """summary.json for a command that rewrites it (resume, test): {} when the run has none
    yet; refused, not silently replaced, when it is damaged (it holds the run's history)."""
    try:
        summary = json.loads(own_file(run, run.summary)) if run.summary.exists() else {}
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
    return flatten(yaml.safe_load(own_file(run, run.config)) or {})


def read_metrics(run: RunDir, up_to_step: int | None = None) -> list[dict]:
    """metrics.csv rows (strings, as written), optionally only those up to a step. A row reslab
    does not write (a step or epoch that is not a whole number, a value that is not a number,
    more fields than the header) is refused, naming it: a resume read it after it had begun
    the attempt (a traceback, and the run left `running`)."""
    if not run.metrics.is_file():
        return []
    rows = list(csv.DictReader(io.StringIO(own_file(run, run.metrics).decode(), newline="")))
    for i, row in enumerate(rows, start=1):
        if fault := row_fault(row):
            raise UserError(f"{run.metrics} row {i} is not one reslab writes ({fault}); restore "
                            "the file, or move it aside to read the run without its curves")
    return rows if up_to_step is None else [r for r in rows if int(r["step"]) <= up_to_step]


def row_fault(row: dict) -> str | None:
    """What is wrong with a metrics.csv row: a step and an epoch are whole numbers, the other
    fields numbers or empty (not logged at that step)."""
    if None in row:
        return f"{len(row[None])} more fields than its header"
    for key, value in (("step", row.get("step")), ("epoch", row.get("epoch") or "0")):
        if not str(value).isdigit():
            return f"{key} {escaped(str(value), 40)!r} is not a whole number"
    for key, value in row.items():
        try:
            float(value or 0)
        except ValueError:
            return f"{escaped(key, 40)} {escaped(value, 40)!r} is not a number"
    return None



def is_torchvision_name(spec: str) -> bool:
    """`IMAGENET1K_V2` and the like (no path separators, an upper-case weights enum name)."""
    return spec.isupper() and "/" not in spec and not Path(spec).exists()


def weights_file(spec: str) -> Path:
    """The file a model.weights path names (a run's best.ckpt, else last.ckpt; a run-name
    folder's newest completed run): also what W&B records as a fine-tune's input."""
    p = Path(spec)
    if p.is_dir() and not is_run_dir(p):
        done = [d for d in runs_in(p) if read_summary(RunDir(d)).get("status") == "completed"]
        if not done:
            raise UserError(f"model.weights={spec}: no completed run in that folder")
        p = done[-1]
    if p.is_dir():
        p = RunDir(p).weights_ckpt
        if not p.exists():
            raise UserError(f"model.weights={spec} is a run directory without a checkpoint "
                            "(checkpoints/best.ckpt or last.ckpt); train or resume it first")
    if not p.exists():
        raise UserError(f"model.weights={spec} is neither a torchvision weights name nor a "
                        "run directory, checkpoint or state dict file")
    return p
