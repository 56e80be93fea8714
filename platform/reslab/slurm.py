"""SLURM: sbatch scripts rendered from the same config that builds the Trainer, submission, and
preemption done right (He et al. is a 64k-iteration recipe; clusters preempt).

Preemption: SLURM sends USR1 `slurm.signal_margin_s` before the time limit (or `scancel
--signal=USR1`). The handler only sets a flag; at the next step boundary every rank agrees on it,
`last.ckpt` is written into the run's stable directory, and rank 0 requeues the job, which
restarts with the same job id and resumes from that checkpoint (REFERENCE §4: saving inside the
signal handler can deadlock or never finish)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from reslab import config as C
from reslab import tracking
from reslab.errors import UserError

JOB_ID = re.compile(r"^\d+(_\d+)?$")
UNSAFE = re.compile(r"[\x00-\x1f\x7f]|\$\(|`")


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


def check_value(key: str, value) -> str:
    text = str(value)
    if UNSAFE.search(text):
        raise C.ConfigError(f"{key}={text!r} contains a control character, '$(' or a backtick, "
                            "which reslab never writes into a job script")
    return text


def apply_geometry(cfg) -> None:
    """trainer.num_nodes / trainer.devices / accelerator come from the slurm section alone; an
    explicit trainer value that disagrees is refused before anything is queued."""
    s = cfg.slurm
    want = {"trainer.num_nodes": s.nodes, "trainer.devices": max(1, s.gpus_per_node)}
    for key, value in want.items():
        have = C.OmegaConf.select(cfg, key)
        if have not in (1, value):
            raise C.ConfigError(f"{key}={have} conflicts with the slurm section ({key} = {value} "
                                f"from slurm.nodes={s.nodes}, slurm.gpus_per_node="
                                f"{s.gpus_per_node}); set slurm.* instead")
    cfg.trainer.num_nodes, cfg.trainer.devices = want.values()
    cfg.trainer.accelerator = "gpu" if s.gpus_per_node else "cpu"


def header(cfg, log: Path, array: int = 0, signal: str = "USR1", tasks_per_node=None) -> list[str]:
    """The #SBATCH block: geometry, requeue, append-mode log, the preemption signal."""
    s = cfg.slurm
    per_node = max(1, s.gpus_per_node) if tasks_per_node is None else tasks_per_node
    opts = [("job-name", "run.name", cfg.run.name), ("nodes", "slurm.nodes", s.nodes),
            ("ntasks-per-node", "slurm.gpus_per_node", per_node),
            ("cpus-per-task", "slurm.cpus_per_task", s.cpus_per_task),
            ("gpus-per-node", "slurm.gpus_per_node", s.gpus_per_node or None),
            ("time", "slurm.time", s.time), ("partition", "slurm.partition", s.partition),
            ("account", "slurm.account", s.account), ("qos", "slurm.qos", s.qos),
            ("mem", "slurm.mem", s.mem), ("constraint", "slurm.constraint", s.constraint),
            ("array", "--array", f"0-{array - 1}" if array > 1 else None),
            ("output", "run.root", log),
            ("signal", "slurm.signal_margin_s", f"{signal}@{int(s.signal_margin_s)}")]
    lines = ["#!/bin/bash"]
    for opt, key, value in opts:
        if value is not None:
            lines.append(f"#SBATCH --{opt}={_sbatch_quote(check_value(key, value))}")
    lines += ["#SBATCH --requeue", "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {check_value('slurm.extra', e)}" for e in s.extra]
    lines += ["", "set -euo pipefail", 'echo "reslab: job $SLURM_JOB_ID attempt '
              '$((${SLURM_RESTART_COUNT:-0} + 1)) on $SLURM_JOB_NODELIST"']
    return lines + [check_value("slurm.setup", line) for line in s.setup]


def render(cfg, runs: list[tracking.RunDir], log: Path, python: str = sys.executable) -> str:
    """The sbatch script for one run, or a job array with one run directory per task. Every
    value is validated and shell-quoted; no secret is written (the W&B key stays in the
    submitting user's environment, which sbatch exports to the job)."""
    lines = header(cfg, log, array=len(runs))
    lines.append("# every attempt (first or requeued) resumes the same run directory")
    train = " ".join(shlex.quote(c) for c in [python, "-m", "reslab.cli", "train", "--resume"])
    if len(runs) == 1:
        target = shlex.quote(check_value("run.root", runs[0].path))
    else:
        quoted = " ".join(shlex.quote(check_value("run.root", r.path)) for r in runs)
        lines.append(f"RUNS=({quoted})")
        target = '"${RUNS[$SLURM_ARRAY_TASK_ID]}"'
    lines.append(f"srun --kill-on-bad-exit=1 {train} {target}")
    return "\n".join(lines) + "\n"


RAY_CLUSTER = """\
# A Ray head on the first node, a worker on each other node; port and temp dir from the job id.
# Token auth stays on: every node and the driver read the token from ~/.ray (shared home).
export RAY_AUTH_MODE=token
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head_ip=$(getent hosts "${nodes[0]}" | awk '{print $1; exit}')
port=$((20000 + SLURM_JOB_ID % 20000))
ray_tmp=/tmp/reslab-ray-$SLURM_JOB_ID
srun --nodes=1 --ntasks=1 -w "${nodes[0]}" @RAY@ start --head --disable-usage-stats \\
    --node-ip-address="$head_ip" --port=$port --num-cpus=$SLURM_CPUS_PER_TASK \\
    --temp-dir="$ray_tmp" --include-dashboard=false --block &
for _ in $(seq 120); do @RAY@ status --address "$head_ip:$port" >/dev/null 2>&1 && break; sleep 1; done
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" @RAY@ start --disable-usage-stats \\
      --address="$head_ip:$port" --num-cpus=$SLURM_CPUS_PER_TASK --block &
done
for _ in $(seq 120); do
  [ "$(@RAY@ status --address "$head_ip:$port" 2>/dev/null | grep -c ' node_')" -ge ${#nodes[@]} ] && break
  sleep 1
done
"""


def render_sweep(cfg, spec_path: Path, items: list[str], sweep_dir: Path,
                 python: str = sys.executable) -> str:
    """A job that starts a Ray cluster over its nodes and runs the sweep driver against it.
    USR1 goes to the batch shell (B:), which requeues the job; the requeued job continues the
    sweep with --resume (trials restart from their own checkpoints)."""
    log = sweep_dir / "slurm" / "slurm-%j.out"
    lines = header(cfg, log, signal="B:USR1", tasks_per_node=1)
    ray = shlex.quote(str(Path(python).with_name("ray")))
    lines.append(RAY_CLUSTER.replace("@RAY@", ray))
    lines.append('trap \'echo "reslab: preempted, requeueing"; scontrol requeue '
                 '"$SLURM_JOB_ID"\' USR1')
    resume = f'$( [ -d {shlex.quote(str(sweep_dir / "tune"))} ] && echo --resume || true)'
    driver = " ".join(shlex.quote(check_value("sweep", c)) for c in
                      [python, "-m", "reslab.cli", "sweep", str(spec_path), *items])
    lines.append(f'{driver} --address "$head_ip:$port" {resume} &')
    lines.append("wait $!")
    return "\n".join(lines) + "\n"


def submit_sweep(spec_path: str, recipes: list[str], overrides: list[str],
                 dry_run: bool = False) -> dict:
    from reslab import sweep

    spec = sweep.load_spec(spec_path, overrides, recipes)
    cfg = spec.base_cfg()
    cfg.run.name = spec.name  # the job's name
    out = sweep.sweep_dir(spec)
    script = render_sweep(cfg, Path(spec_path).resolve(), [str(Path(r).resolve()) for r in recipes]
                          + overrides, out)
    if dry_run:
        return {"script": script, "run_dirs": [str(out)]}
    (out / "slurm").mkdir(parents=True, exist_ok=True)
    return _sbatch(script, out / "slurm", [out], out / "slurm" / "slurm-%j.out", array=False)


def _sbatch_quote(value: str) -> str:
    # sbatch reads #SBATCH lines itself (no shell): double quotes keep spaces in one value.
    if '"' in value:
        raise C.ConfigError(f"a job option cannot contain a double quote, got {value!r}")
    return f'"{value}"' if re.search(r"\s", value) else value


def parse_array(spec: str | None) -> tuple[str, list[str]] | None:
    """`--array seed=0,1,2` -> ("seed", ["0", "1", "2"])."""
    if spec is None:
        return None
    key, sep, values = spec.partition("=")
    items = [v for v in values.split(",") if v != ""]
    if not sep or not key or not items:
        raise UserError(f"--array must look like KEY=V1,V2,... (e.g. seed=0,1,2), got {spec!r}")
    if key.startswith("slurm.") or key in ("trainer.num_nodes", "trainer.devices"):
        raise UserError(f"--array cannot vary {key}: every task of an array has the same shape")
    return key, items


def submit(recipes: list[str], overrides: list[str], dry_run: bool = False,
           array: str | None = None) -> dict:
    """Render, write into the run's slurm/ folder and sbatch; nothing is created on dry runs."""
    from reslab.train import prepare

    spec = parse_array(array)
    variants = [[f"{spec[0]}={v}"] for v in spec[1]] if spec else [[]]
    cfgs = []
    for extra in variants:
        cfg = C.load(recipes, overrides + extra, validated=False)
        apply_geometry(cfg)
        C.validate(cfg)
        prepare(cfg)  # refuse a missing dataset or a bad model before queueing
        cfgs.append(cfg)
    runs = [tracking.RunDir(tracking.run_path(c, tracking.new_run_id())) for c in cfgs]
    if spec:
        base = runs[0].path.parent / f"array-{runs[0].run_id}"
        log = base / "slurm-%A_%a.out"
    else:
        base, log = runs[0].path / "slurm", runs[0].path / "slurm" / "slurm-%j.out"
    script = render(cfgs[0], runs, log)
    if dry_run:
        return {"script": script, "run_dirs": [str(r.path) for r in runs]}
    for cfg, run in zip(cfgs, runs):
        tracking.open_run(cfg, run.run_id)
        (run.path / "slurm").mkdir(exist_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    return _sbatch(script, base, [r.path for r in runs], log, array=bool(spec))


def _sbatch(script: str, folder: Path, run_dirs: list[Path], log: Path, array: bool) -> dict:
    if not shutil.which("sbatch"):
        raise UserError("sbatch is not on PATH: run this on a SLURM login node (or "
                        "`slurm/local-cluster.sh up` for the local cluster)")
    (folder / "job.sbatch").write_text(script)
    out = subprocess.run(["sbatch", "--parsable", str(folder / "job.sbatch")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"sbatch refused the job: {out.stderr.strip().splitlines()[-1]}")
    jid = out.stdout.strip().split(";")[0]
    for i, run in enumerate(run_dirs):
        task = f"{jid}_{i}" if array else jid
        (run / "slurm").mkdir(exist_ok=True)
        (run / "slurm" / "job_id").write_text(task + "\n")
        task_log = str(log).replace("%A", jid).replace("%a", str(i)).replace("%j", jid)
        (run / "slurm" / "log").write_text(task_log + "\n")
    return {"job_id": jid, "run_dirs": [str(r) for r in run_dirs],
            "log": str(log).replace("%A", jid).replace("%j", jid), "script": script}


def requeue(jid: str) -> None:
    if not JOB_ID.match(jid):
        raise UserError(f"refusing to requeue {jid!r}: not a job id")
    subprocess.run(["scontrol", "requeue", jid], check=True, timeout=60)


class Preempted(Exception):
    """Raised at the step boundary after the preemption checkpoint is written: it ends `fit`
    at once, before Lightning's end-of-epoch validation and checkpointing could run."""


class StepCheckpoint(Callback):
    """Writes last.ckpt at step boundaries: every `every_n_steps` (so a hard kill loses little),
    and when a preemption signal arrived on any rank."""

    def __init__(self, path: Path, every_n_steps: int = 0, signum: int = signal.SIGUSR1):
        self.path, self.every, self.signum = path, every_n_steps, signum
        self.flag = self.armed = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and in_slurm_step():
            signal.signal(self.signum, self._on_signal)
            self.armed = True  # outside SLURM no flag can be raised: no per-step all-reduce

    def _on_signal(self, signum, frame) -> None:
        self.flag = True  # nothing else: the save happens at the next step boundary

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        preempt = self.flag
        if self.armed and trainer.world_size > 1:  # every rank decides alike at the same step
            t = torch.tensor(float(self.flag), device=pl_module.device)
            preempt = bool(trainer.strategy.reduce(t, reduce_op="max").item())
        periodic = self.every and trainer.global_step % self.every == 0
        if preempt or periodic:
            pl_module.check_finite()
            trainer.save_checkpoint(self.path)
        if preempt:
            raise Preempted(f"preempted at step {trainer.global_step}")


def status_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        run = tracking.RunDir(Path(p))
        jid_file = run.path / "slurm" / "job_id"
        jid = jid_file.read_text().strip() if jid_file.is_file() else None
        state, n = _scontrol(jid) if jid else ("-", "-")
        s = tracking.read_summary(run)
        pointer = run.path / "slurm" / "log"
        log = Path(pointer.read_text().strip()) if pointer.is_file() else None
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log and log.is_file() \
            else []
        rows.append({"run": str(run.path), "job": jid or "-", "state": state, "restarts": n,
                     "status": s.get("status", "-"), "epoch": s.get("epoch", "-"),
                     "val/err": s.get("val/err", "-"), "log": tail[0] if tail else ""})
    return rows


def _scontrol(jid: str) -> tuple[str, str]:
    try:
        out = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", "-"
    state = re.search(r"JobState=(\S+)", out)
    n = re.search(r"Restarts=(\d+)", out)
    return (state.group(1) if state else "gone"), (n.group(1) if n else "-")
