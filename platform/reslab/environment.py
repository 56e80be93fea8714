"""Facts about the process's environment, standard library only: the SLURM job it runs in (and
which launcher started it, if any), and where a run came from for its summary.json (the code's
git commit, package versions, the host, the SLURM job, the Ray node): reproducing a run needs
these besides its config. Acting on them (requeueing a preempted job) is reslab.run.stopping's."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

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


# Which process of a distributed launch this one is. Lightning reads the first of RANK,
# LOCAL_RANK, SLURM_PROCID, JSM_NAMESPACE_RANK when it is imported ('abc' was a traceback), and a
# process that is not rank 0 writes no records: a stray LOCAL_RANK=1 trained a run silently into
# checkpoints alone. NODE_RANK places the process on another node.
RANKS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK")
# SLURM's counts, which Lightning and the requeue read as whole numbers.
COUNTS = ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_LOCALID",
          "SLURM_NODEID", "SLURM_RESTART_COUNT")


def check_numbers() -> None:
    """The launchers' ranks and counts are whole numbers where set: Lightning reads some of them
    when it is imported, the rest after the run directory was made (a traceback either way)."""
    for key in RANKS + COUNTS:
        value = os.environ.get(key)
        if value is not None and not re.fullmatch(r"\d{1,9}", value):
            raise UserError(f"{key}={value!r} is not a whole number; it says where this process "
                            "stands in a distributed launch (SLURM, torchrun): run inside one, "
                            f"or unset {key}")


def check_launch(devices: int, num_nodes: int) -> None:
    """This process's place in a distributed launch fits a run of `devices` x `num_nodes`
    processes: no stray rank (below); more than one node only under a launcher; in a SLURM step,
    the step's tasks are the run's processes (Lightning's own check of them was a traceback)."""
    check_stray_ranks()
    job_id()  # recorded in summary.json: a job id, or refused
    if node_launcher() is None:
        check_nodes(num_nodes)
    elif in_slurm_step() and not slurm_interactive():
        check_slurm_step(devices, num_nodes)


def check_stray_ranks() -> None:
    """The launchers' numbers are whole numbers, and without a launcher no rank variable says
    this process is another than the first (a leftover from another shell). The sweep driver
    checks this too: its trials inherit its environment."""
    check_numbers()
    if node_launcher() is None:
        stray = [k for k in RANKS if int(os.environ.get(k, "0")) != 0]
        if stray:
            raise UserError(f"{', '.join(f'{k}={os.environ[k]}' for k in stray)} in the "
                            "environment says this process is not the first of a distributed "
                            "launch, but no launcher started it (no SLURM step, torchrun, or "
                            "MASTER_ADDR with NODE_RANK), and such a process writes no records; "
                            f"unset {' and '.join(stray)}")


def slurm_interactive() -> bool:
    """An interactive SLURM shell (job name bash or interactive), where Lightning does not
    check the step's tasks either."""
    return os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")


def check_slurm_step(devices: int, num_nodes: int) -> None:
    env = os.environ
    tasks, task = int(env["SLURM_NTASKS"]), int(env.get("SLURM_PROCID", "0"))
    wanted = f"trainer.devices={devices} x trainer.num_nodes={num_nodes}"
    where = ("; `reslab submit` starts one task per device, or run it outside srun "
             "(unset SLURM_JOB_ID and SLURM_NTASKS)")
    if task >= tasks:
        raise UserError(f"SLURM_PROCID={task} is not a task of this SLURM step (SLURM_NTASKS="
                        f"{tasks}), so this process's SLURM environment is damaged" + where)
    per_node, nodes = env.get("SLURM_NTASKS_PER_NODE"), env.get("SLURM_NNODES")
    fits = (tasks == devices * num_nodes,
            tasks == 1 or per_node is not None,  # Lightning takes --ntasks only with per node
            per_node is None or int(per_node) == devices,
            nodes is None or int(nodes) == num_nodes)
    if not all(fits):
        step = ", ".join(f"{k}={env[k]}" for k in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE",
                                                  "SLURM_NNODES") if k in env)
        raise UserError(f"this SLURM step ({step}) does not start one task per process of "
                        f"the run ({wanted}), with --ntasks-per-node set" + where)


WANDB_MODES = ("online", "offline", "disabled", "shared")
WANDB_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # W&B's older names for its modes


def wandb_mode(configured: str | None) -> str:
    """The W&B mode a run uses: the recipe's logger.wandb.mode, else W&B's own WANDB_MODE, else
    offline. A WANDB_MODE that W&B would refuse is refused before anything is written."""
    if not configured and os.environ.get("WANDB_MODE", "x").strip() == "":
        raise UserError("WANDB_MODE is set but empty, which W&B refuses; set it to one of "
                        f"{', '.join(WANDB_MODES)} or unset it")
    chosen = configured or os.environ.get("WANDB_MODE") or "offline"
    chosen = WANDB_MODE_ALIASES.get(chosen, chosen)
    if chosen not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={chosen!r} is not a W&B mode ({', '.join(WANDB_MODES)}, or "
                        "the older dryrun and run); set it to one of them or unset it")
    return chosen


def job_id() -> str | None:
    jid = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    value = f"{jid[0]}_{jid[1]}" if all(jid) else os.environ.get("SLURM_JOB_ID")
    if value is not None and not JOB_ID.match(value):
        raise UserError(f"SLURM_JOB_ID {value!r} is not a job id (digits, or digits_digits)")
    return value


def restarts() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


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
