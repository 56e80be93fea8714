"""Where a run came from, for its summary.json: the code's git commit, package versions, the host,
the SLURM job and the Ray node. Reproducing a run needs these besides its config."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def env_info() -> dict:
    """What reproducing the run needs besides its config: code version and package versions."""
    return {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        **{name: _version(name) for name in ("torch", "torchvision", "lightning")},
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "ray_node_id": _ray_node_id(),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
