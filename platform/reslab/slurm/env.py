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


def node_launcher() -> str | None:
    """What started this process as one of several nodes' processes, if anything: a SLURM step,
    torchrun (torchelastic), or a hand-made launch that gives every node MASTER_ADDR and its
    NODE_RANK (Lightning's own multi-node environment)."""
    if in_slurm_step():
        return "a SLURM step"
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    if "MASTER_ADDR" in os.environ and "NODE_RANK" in os.environ:
        return "MASTER_ADDR and NODE_RANK"
    return None


def check_nodes(num_nodes: int) -> None:
    """Training on more than one node needs the other nodes' processes started by a launcher:
    without one, rank 0 waits for them in DDP's rendezvous forever (with status `running`)."""
    if num_nodes > 1 and node_launcher() is None:
        raise UserError(f"trainer.num_nodes={num_nodes} needs a process on each node, which "
                        "nothing here starts: submit it with `reslab submit` (SLURM), or "
                        "launch it on every node with torchrun or with MASTER_ADDR and "
                        "NODE_RANK set; on this machine use trainer.num_nodes=1")


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
