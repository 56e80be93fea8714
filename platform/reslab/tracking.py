"""Run directories, run ids, the CSV and W&B loggers, and secret redaction.

    <run.root>/<run.name>/<run_id>/
        config.yaml  summary.json  metrics.csv  checkpoints/{last,best}.ckpt  wandb/  slurm/
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from reslab import config as C
from reslab.errors import UserError

SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd)", re.I)
SECRET_ENV = ("WANDB_API_KEY",)


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

    @property
    def weights_ckpt(self) -> Path:
        """best.ckpt, else last.ckpt: the weights to evaluate or to start from."""
        return self.best_ckpt if self.best_ckpt.is_file() else self.last_ckpt


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_path(cfg, run_id: str) -> Path:
    """<run.root>/<run.name>/<run_id>, refusing anything that would land outside run.root."""
    C.check_run_name(cfg.run.name)
    root = Path(cfg.run.root).resolve()
    path = (root / cfg.run.name / run_id).resolve()
    if root not in path.parents:
        raise UserError(f"run directory {path} would be outside run.root {root}")
    return path


def open_run(cfg, run_id: str | None = None) -> RunDir:
    """Create the run directory and write its resolved, redacted config.yaml."""
    run = RunDir(run_path(cfg, run_id or new_run_id()))
    if is_rank_zero():
        run.checkpoints.mkdir(parents=True, exist_ok=True)
    write_atomic(run.config, OmegaConf.to_yaml(OmegaConf.create(redact(C.to_dict(cfg)))))
    return run


def find_run(path: str | Path) -> RunDir:
    """A run directory given by the user (resume, test): it must hold config.yaml."""
    p = Path(path)
    if p.is_file() and p.parent.name == "checkpoints":
        p = p.parent.parent
    if not (p / "config.yaml").is_file():
        raise UserError(f"{path} is not a run directory (no config.yaml in it)")
    return RunDir(p.resolve())


def is_rank_zero() -> bool:
    return rank_zero_only.rank == 0


def write_atomic(path: Path, text: str) -> None:
    if not is_rank_zero():
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_summary(run: RunDir) -> dict:
    try:
        return json.loads(run.summary.read_text())
    except (OSError, ValueError):
        return {}


def write_summary(run: RunDir, summary: dict) -> None:
    write_atomic(run.summary, json.dumps(redact(summary), indent=2, sort_keys=True) + "\n")


def redact(obj: Any) -> Any:
    """Mask values under secret-looking keys and any value equal to a secret in the environment."""
    env_secrets = {v for k in SECRET_ENV if (v := os.environ.get(k))}
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in env_secrets):
        return "***"
    return obj


def env_info() -> dict:
    """What reproducing the run needs besides its config: code version and package versions."""
    import lightning
    import torch
    import torchvision

    return {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "ray_node_id": _ray_node_id(),
    }


def _ray_node_id() -> str | None:
    """The Ray node a sweep trial ran on (which SLURM node, in a multi-node sweep job)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def _git_commit() -> str | None:
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class CSVMetrics(Logger):
    """metrics.csv in the run directory: one row per logging call, columns `step`, `epoch` and
    every metric key (`split/name`). On resume it keeps the rows up to the checkpoint's step and
    appends after them, so no step appears twice."""

    def __init__(self, path: Path, resume_step: int | None = None):
        super().__init__()
        self.path = path
        self.rows: list[dict] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.columns = list(dict.fromkeys(k for r in self.rows for k in r)) or ["step", "epoch"]
        self._rewrite()

    name = property(lambda self: "csv")
    version = property(lambda self: "")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config is config.yaml

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"step": step, **{k: _num(v) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    @rank_zero_only
    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


def _num(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def wandb_logger(cfg, run: RunDir):
    """The W&B logger (offline by default, files under the run dir), or None when W&B is off or
    cannot start — training never fails because of W&B."""
    w = cfg.logger.wandb
    if w.mode == "disabled":
        return None
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(
            save_dir=str(run.path), id=wandb_id(run), name=w.name or cfg.run.name,
            project=w.project, entity=w.entity, group=w.group, tags=list(w.tags),
            job_type=w.job_type, mode=w.mode, resume="allow",
            config=C.flatten(redact(C.to_dict(cfg))),
            settings=wandb.Settings(init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)),
                                    save_code=False, x_disable_stats=True, console="off"),
        )
        _ = logger.experiment  # start now, so a failure is caught here and not mid-training
        return logger
    except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
        warnings.warn(f"W&B could not start ({type(e).__name__}: {str(e)[:200]}); "
                      "continuing with metrics.csv only", stacklevel=2)
        return None


def wandb_id(run: RunDir) -> str:
    """Stable across attempts (requeues, retries) and unique per run directory: W&B ids allow
    letters, digits, '-' and '_' only, so a sweep trial's 'depth=56,shortcut=none' gets a hash."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run.run_id):
        return run.run_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", run.run_id).strip("-")[:48]
    return f"{safe}-{hashlib.sha1(str(run.path).encode()).hexdigest()[:10]}"


def finish_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
