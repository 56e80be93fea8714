"""sbatch scripts rendered from the same config that builds the Trainer. Every value written is
validated (no control characters, `$(` or backticks) and quoted; no secret is written (the W&B
key stays in the submitting user's environment, which sbatch exports to the job).

Preemption: SLURM sends USR1 `slurm.signal_margin_s` before the time limit (or `scancel
--signal=USR1`), a cluster's preemption sends SIGTERM; the ranks checkpoint at the next step
boundary and requeue the job, which restarts with the same job id and resumes the same run
directory (reslab.run.stopping). The batch shell forwards both signals to the step."""

from __future__ import annotations

import re
import shlex
import sys
from importlib import resources
from pathlib import Path

from reslab.config.schema import Config
from reslab.errors import ConfigError
from reslab.tracking.rundir import RunDir, SweepDir

UNSAFE = re.compile(r"[\x00-\x1f\x7f]|\$\(|`")


def check_value(key: str, value) -> str:
    text = str(value)
    if UNSAFE.search(text):
        raise ConfigError(f"{key}={text!r} contains a control character, '$(' or a backtick, "
                          "which reslab never writes into a job script")
    return text


def header(cfg: Config, log: Path, array: int = 0, signal: str = "USR1",
           tasks_per_node: int | None = None) -> list[str]:
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
            ("output", "run.root", log_pattern(log)),
            ("signal", "slurm.signal_margin_s", f"{signal}@{int(s.signal_margin_s)}")]
    lines = ["#!/bin/bash"]
    for opt, key, value in opts:
        if value is not None:
            lines.append(f"#SBATCH --{opt}={_sbatch_quote(key, check_value(key, value))}")
    lines += ["#SBATCH --requeue", "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {check_extra(e)}" for e in s.extra]
    lines += ["", "set -euo pipefail", 'echo "reslab: job $SLURM_JOB_ID attempt '
              '$((${SLURM_RESTART_COUNT:-0} + 1)) on $SLURM_JOB_NODELIST"']
    return lines + [check_value("slurm.setup", line) for line in s.setup]


def log_pattern(log: Path) -> str:
    """The --output value: SLURM expands % in the whole path, so a % of the run's directory
    (a run.name with one) is written %%; the file name's %j, %A and %a are reslab's own."""
    return f"{str(log.parent).replace('%', '%%')}/{log.name}"


# The options reslab writes itself, and the key that sets each: a slurm.extra line that set one
# again would change the job's shape behind the config, split or move its log, or undo the
# requeue and the warning signal that preemption relies on.
OWN_OPTIONS = {
    "job-name": "run.name", "nodes": "slurm.nodes", "ntasks": "slurm.gpus_per_node",
    "ntasks-per-node": "slurm.gpus_per_node", "gpus": "slurm.gpus_per_node",
    "gpus-per-node": "slurm.gpus_per_node", "gpus-per-task": "slurm.gpus_per_node",
    "gres": "slurm.gpus_per_node", "cpus-per-task": "slurm.cpus_per_task",
    "time": "slurm.time", "partition": "slurm.partition", "account": "slurm.account",
    "qos": "slurm.qos", "mem": "slurm.mem", "constraint": "slurm.constraint",
    "array": "--array", "output": "run.root", "error": "run.root",
    "signal": "slurm.signal_margin_s", "requeue": None, "no-requeue": None, "open-mode": None,
}
SHORT_OPTIONS = {"J": "job-name", "N": "nodes", "n": "ntasks", "G": "gpus", "c": "cpus-per-task",
                 "t": "time", "p": "partition", "A": "account", "q": "qos", "C": "constraint",
                 "a": "array", "o": "output", "e": "error"}


def check_extra(line: str) -> str:
    """A slurm.extra line: one sbatch option (`--mail-type=END`, `-x node3`) that reslab does
    not write itself, its value quoted where it holds a space (`--comment=a b`: sbatch refused
    the bare `b` as a directive)."""
    text = check_value("slurm.extra", line).strip()
    m = re.match(r"(--([A-Za-z][\w-]*)|-([A-Za-z]))(?=[=\s]|$)", text)
    if m is None:
        raise ConfigError(f"slurm.extra {text!r} must be one sbatch option, such as "
                          "--mail-type=END or -x node3")
    given = m.group(2) or SHORT_OPTIONS.get(m.group(3))
    # sbatch takes any unambiguous start of a long option for it (--out= is --output=)
    if name := next((o for o in OWN_OPTIONS if given and o.startswith(given)), None):
        key = OWN_OPTIONS[name]
        how = f"set {key} instead" if key else "reslab always sets it (preemption requeues the job)"
        raise ConfigError(f"slurm.extra {text!r} sets --{name}, which reslab decides itself; {how}")
    value = text[m.end():].lstrip("=").strip()
    if len(value) > 1 and value[0] == value[-1] == '"':  # quoted already
        value = value[1:-1]
    sep = text[m.end():m.end() + 1] if text[m.end():].startswith("=") else " "
    return m.group(1) + (sep + _sbatch_quote("slurm.extra", value) if value else "")


def _sbatch_quote(key: str, value: str) -> str:
    # sbatch reads #SBATCH lines itself (no shell): double quotes keep spaces in one value; it
    # takes quotes and backslashes as its own syntax (a backslash vanished, so the job's log went
    # to another path and the job failed with no log; a lone ' passed the dry run, then sbatch
    # refused it).
    if bad := next((c for c in "\"'\\" if c in value), None):
        raise ConfigError(f"{key} puts {value!r} on an #SBATCH line, where sbatch reads {bad!r} "
                          "itself: choose a value without quotes or backslashes")
    return f'"{value}"' if re.search(r"\s", value) else value


def render(cfg: Config, runs: list[RunDir], log: Path, python: str = sys.executable) -> str:
    """The sbatch script for one run, or a job array with one run directory per task."""
    lines = header(cfg, log, array=len(runs))
    lines.append("# every attempt (first or requeued) resumes the same run directory")
    train = " ".join(shlex.quote(c) for c in [python, "-m", "reslab", "train", "--resume"])
    if len(runs) == 1:
        target = shlex.quote(check_value("run.root", runs[0].path))
    else:
        quoted = " ".join(shlex.quote(check_value("run.root", r.path)) for r in runs)
        lines.append(f"RUNS=({quoted})")
        target = '"${RUNS[$SLURM_ARRAY_TASK_ID]}"'
    lines.append(f"srun --kill-on-bad-exit=1 {train} {target} &")
    return "\n".join(lines) + "\n" + FORWARD_SIGNALS


# A preemption may signal the batch shell too (`scancel --full`, PreemptMode=REQUEUE): without a
# trap bash would die at once and take the ranks with it. The ranks checkpoint at the next step
# boundary and requeue the job; `wait` returns early on each trapped signal, so wait again.
FORWARD_SIGNALS = """\
step=$!
trap 'kill -USR1 "$step" 2>/dev/null || true' USR1
trap 'kill -TERM "$step" 2>/dev/null || true' TERM
status=0
while :; do
  wait "$step" && status=0 || status=$?
  kill -0 "$step" 2>/dev/null || break
done
exit "$status"
"""


def render_sweep(cfg: Config, spec_path: Path, items: list[str], sweep: SweepDir,
                 python: str = sys.executable) -> str:
    """A job that starts a Ray cluster over its nodes (ray_cluster.sh) and runs the sweep driver
    against it. USR1 goes to the batch shell (B:), which requeues the job; the requeued job
    continues the sweep with --resume (trials restart from their own checkpoints)."""
    lines = header(cfg, sweep.slurm / "slurm-%j.out", signal="B:USR1", tasks_per_node=1)
    lines.append(f"RAY={shlex.quote(str(Path(python).with_name('ray')))}")
    lines.append(resources.files("reslab.slurm").joinpath("ray_cluster.sh").read_text())
    lines.append('trap \'echo "reslab: preempted, requeueing"; scontrol requeue '
                 '"$SLURM_JOB_ID"\' USR1')
    lines += ["resume=()", f"if [ -d {shlex.quote(str(sweep.tune))} ]; then resume=(--resume); fi"]
    driver = " ".join(shlex.quote(check_value("sweep", c)) for c in
                      [python, "-m", "reslab", "sweep", str(spec_path), *items])
    lines.append(f'{driver} --address "$head_ip:$port" "${{resume[@]}}" &')
    lines.append("wait $!")
    return "\n".join(lines) + "\n"
