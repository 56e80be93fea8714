"""Facts about the SLURM job this process runs in, and requeueing it. Standard library only."""

from __future__ import annotations

import os
import re
import subprocess

from reslab.errors import UserError

JOB_ID = re.compile(r"^\d+(_\d+)?$")


def in_slurm_step() -> bool:
    """Started by `srun` inside an allocation (a bare process in a job has no SLURM_NTASKS)."""
    return "SLURM_JOB_ID" in os.environ and "SLURM_NTASKS" in os.environ


def job_id() -> str | None:
    jid = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    value = f"{jid[0]}_{jid[1]}" if all(jid) else os.environ.get("SLURM_JOB_ID")
    if value is not None and not JOB_ID.match(value):
        raise UserError(f"SLURM_JOB_ID {value!r} is not a job id (digits, or digits_digits)")
    return value


def restarts() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def requeue(jid: str) -> None:
    if not JOB_ID.match(jid):
        raise UserError(f"refusing to requeue {jid!r}: not a job id")
    subprocess.run(["scontrol", "requeue", jid], check=True, timeout=60)


def preempted_status(max_restarts: int) -> dict:
    """The summary fields after a preemption: requeue unless the job has used up its restarts."""
    n = restarts()
    if n >= max_restarts:
        return {"status": "failed", "error": f"preempted after {n} restarts, the limit "
                                             f"slurm.max_restarts={max_restarts}; resume with "
                                             "`reslab train --resume RUN_DIR`"}
    return {"status": "preempted", "restarts": n}
