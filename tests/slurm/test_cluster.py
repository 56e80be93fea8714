"""`reslab submit` on the real local SLURM cluster (slurm/local-cluster.sh): a 2-node DDP job,
preemption by USR1 with requeue and bitwise-exact resume, and a hard kill followed by a requeue.
Every wait polls `scontrol show job` (or the log) with a deadline."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
import torch

from support import run_main, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

# A path with a space: everything must be quoted end to end.
JOB = ["configs/quickstart.yaml", "configs/slurm/local.yaml", "model.depth=8",
       "data.batch_size=128", "trainer.max_epochs=6", "optim.schedule=onecycle",
       "run.test=false", "trainer.checkpoint_every_n_steps=4"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not shutil.which("sbatch"):
        pytest.fail("no SLURM here: run `slurm/local-cluster.sh up` (make test does, as root)")
    up = subprocess.run(["bash", "slurm/local-cluster.sh", "status"], capture_output=True,
                        cwd=Path(__file__).parents[2])
    assert up.returncode == 0, "the local cluster is down: slurm/local-cluster.sh up"


def job_state(jid: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True).stdout
    return dict(re.findall(r"(JobState|Reason|Restarts|ExitCode)=(\S+)", out))


CANARY = "canary-slurm-7d2c9e"  # a fake W&B key in the submitting environment


def submit(root: Path, *extra: str) -> tuple[str, Path, Path]:
    with mock.patch.dict(os.environ, {"WANDB_API_KEY": CANARY}):  # sbatch exports it to the job
        r = run_main("submit", *JOB, f"run.root={root}", *extra)
    assert r.returncode == 0, r.stderr
    jid = re.search(r"submitted job (\d+)", r.stdout).group(1)
    run = Path(re.search(r"run directory: (.*)", r.stdout).group(1))
    log = Path(re.search(r"log: (.*)", r.stdout).group(1))
    return jid, run, log


def test_an_array_runs_one_task_per_value_and_status_reports_them(tmp_path):
    r = run_main("submit", *JOB, f"run.root={tmp_path}", "slurm.nodes=1", "trainer.max_epochs=2",
               "--array", "seed=3,4")
    assert r.returncode == 0, r.stderr
    jid = re.search(r"submitted job (\d+)", r.stdout).group(1)
    runs = [Path(p) for p in re.findall(r"run directory: (.*)", r.stdout)]
    assert len(runs) == 2
    for i in range(2):
        wait_done(f"{jid}_{i}")
    for seed, run in zip((3, 4), runs):
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed", (run / "slurm/log").read_text()
        assert f"seed: {seed}" in (run / "config.yaml").read_text()
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    st = run_main("status", "--root", tmp_path)
    assert st.returncode == 0, st.stderr
    assert st.stdout.count("COMPLETED") == 2 and f"job {jid}_0" in st.stdout


def wait_done(jid: str, timeout: float = 240) -> dict:
    """The job's final state; a job that outlives `timeout` is cancelled (it held the cluster's
    nodes through the tests after it)."""
    try:
        return wait_for(lambda: (s := job_state(jid)).get("JobState") in
                        ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") and s, timeout,
                        f"job {jid} to finish")
    except AssertionError:
        subprocess.run(["scancel", jid], check=False)
        raise


def requeue_now(jid: str, attempt: int = 2) -> None:
    """After a requeue SLURM holds the job ~120 s (BeginTime); start it at once instead — but
    not within seconds of the requeue, with the nodes idle: a job restarted in the second its old
    attempt ended is killed ("Job credential revoked", the old attempt's credential). The job
    may still be RUNNING its first attempt when this is called: wait for the requeue (Restarts)
    before taking RUNNING as the new attempt."""
    held_since: list[float] = []

    def started() -> bool:
        s = job_state(jid)
        if s.get("JobState") == "PENDING" and s.get("Reason") == "BeginTime":
            held_since[:] = held_since or [time.monotonic()]
            if time.monotonic() - held_since[0] >= 3 and nodes_idle():
                subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"],
                               check=True)
        return int(s.get("Restarts", 0)) >= attempt - 1 and \
            s.get("JobState") in ("RUNNING", "COMPLETED")
    wait_for(started, 90, f"requeued job {jid} to start again", interval=0.5)


def nodes_idle() -> bool:
    states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True,
                            text=True).stdout.split()
    return bool(states) and all(s == "idle" for s in states)


def final_weights(run: Path) -> dict:
    return torch.load(run / "checkpoints/last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "with space"
    jid, run, log = submit(root)
    state = wait_done(jid)
    return jid, run, log, state


def test_two_node_ddp_job_completes_with_one_wandb_run(reference):
    jid, run, log, state = reference
    text = log.read_text()
    assert state["JobState"] == "COMPLETED", text[-3000:]
    assert "world size 2 (2 nodes x 1 devices, DDP)" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["env"]["slurm_job_id"] == jid
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert (run / "slurm/job.sbatch").is_file()
    leaks = [p for p in run.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert not leaks, f"the W&B key leaked into {leaks}"  # script, SLURM log, W&B files


def test_usr1_requeues_and_resumes_bitwise_exactly(reference, tmp_path):
    """USR1 to every process of the job (`--full`: the batch shell too, which must survive it
    and forward it): requeued, resumed at the stop step, equal to the uninterrupted run."""
    jid, run, log = submit(tmp_path)
    wait_for(lambda: log.is_file() and "epoch 2/" in log.read_text(), 180, "epoch 2 in the log")
    subprocess.run(["scancel", "--signal=USR1", "--full", jid], check=True)
    requeue_now(jid)
    state = wait_done(jid)
    text = log.read_text()
    assert state["JobState"] == "COMPLETED", text[-3000:]
    assert state["Restarts"] == "1"
    assert "attempt 1" in text and "attempt 2" in text
    stopped = re.search(r"preempted at step (\d+)", text).group(1)
    assert f"resuming at step {stopped}" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    ref = final_weights(reference[1])
    ours = final_weights(run)
    for k, v in ref.items():
        assert torch.equal(v, ours[k]), k
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({p.name.split("-", 3)[-1] for p in runs}) == 1, runs


def test_sigterm_to_the_ranks_saves_the_stop_step_and_a_requeue_resumes_there(tmp_path):
    """SIGTERM is how SLURM cancels and how it preempts (PreemptMode=REQUEUE, which then
    requeues the job itself): the ranks checkpoint at the next step boundary and do not requeue;
    the requeue here stands in for SLURM's."""
    jid, run, log = submit(tmp_path)
    wait_for(lambda: log.is_file() and "epoch 2/" in log.read_text(), 180, "epoch 2 in the log")
    subprocess.run(["scancel", "--signal=TERM", jid], check=True)
    first = wait_done(jid)
    text = log.read_text()
    stopped = re.search(r"interrupted at step (\d+)", text)
    assert stopped and first["Restarts"] == "0", text[-3000:]
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == \
        int(stopped.group(1))
    subprocess.run(["scontrol", "requeue", jid], check=True)
    requeue_now(jid)
    state = wait_done(jid)
    text = log.read_text()
    assert state["JobState"] == "COMPLETED", text[-3000:]
    assert f"resuming at step {stopped.group(1)}" in text


def test_kill_9_then_requeue_resumes_from_the_periodic_checkpoint(tmp_path):
    jid, run, log = submit(tmp_path)
    wait_for(lambda: log.is_file() and "epoch 3/" in log.read_text(), 180, "epoch 3 in the log")
    pids = [int(p) for p in re.findall(r"^(\d+)\s", subprocess.run(
        ["scontrol", "listpids", jid], capture_output=True, text=True).stdout, re.M)]
    python = [p for p in pids if "python" in Path(f"/proc/{p}/comm").read_text(errors="ignore")
              if Path(f"/proc/{p}/comm").exists()]
    assert python, pids
    os.kill(python[0], signal.SIGKILL)
    first = wait_done(jid)
    assert first["JobState"] == "FAILED"
    subprocess.run(["scontrol", "requeue", jid], check=True)
    requeue_now(jid)
    state = wait_done(jid)
    text = log.read_text()
    assert state["JobState"] == "COMPLETED", text[-3000:]
    step = int(re.search(r"resuming at step (\d+)", text).group(1))
    assert step >= 8  # at least the end of epoch 2 (5 steps/epoch) or a later periodic save
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_a_sweep_job_runs_trials_on_both_nodes(tmp_path):
    """Tune reuses a worker whose trial ended for the next trial: trials shorter than the
    second node's worker takes to start (it imports torch and Lightning: ~11 s here under the
    test suite's load) all ran on the first node. Each of these trains 20 epochs.
    The job runs in a home with no Ray token yet (a fresh account: `ray start --head` refused
    to start and the job waited 7 minutes for a cluster that had died)."""
    home = tmp_path / "home"
    home.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: slurm_sweep
base:
  recipes: [{Path(__file__).parents[2]}/configs/quickstart.yaml]
  overrides: [trainer.max_epochs=20, data.batch_size=256, run.test=false, "run.root={tmp_path}"]
space:
  model.depth: [8, 14]
  model.shortcut: [none, A]
""")
    with mock.patch.dict(os.environ, {"HOME": str(home)}):  # sbatch exports it to the job
        r = run_main("submit", "--sweep", spec, "configs/slurm/local.yaml")
    assert r.returncode == 0, r.stderr
    jid = re.search(r"submitted job (\d+)", r.stdout).group(1)
    state = wait_done(jid, timeout=420)
    out = tmp_path / "slurm_sweep"
    log = (out / "slurm" / f"slurm-{jid}.out").read_text()
    assert state["JobState"] == "COMPLETED", log[-3000:]
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    nodes = {json.loads((out / r["trial"] / "summary.json").read_text())["env"]["ray_node_id"]
             for r in rows}
    joined = [line for line in log.splitlines() if "joined" in line]
    assert len(nodes) == 2, f"the trials ran on {len(nodes)} node(s), not both ({joined}):\n" \
                            f"{log[-3000:]}"
    assert (home / ".ray/auth_token").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("extra", [[], ["--array", "seed=0,1"]])
def test_a_job_sbatch_refuses_leaves_no_run_directory(tmp_path, extra):
    """sbatch's refusal (a partition the cluster has not) left config.yaml, checkpoints/ and
    slurm/job.sbatch behind, which `reslab status` listed as a submitted run."""
    r = run_main("submit", *JOB, f"run.root={tmp_path}", "slurm.nodes=1",
                 "slurm.partition=nosuch", *extra)
    assert r.returncode == 2 and "sbatch refused the job" in r.stderr, r.stderr
    assert list(tmp_path.rglob("*")) == []
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: s\nbase:\n  recipes: [{Path.cwd()}/configs/quickstart.yaml]\n"
                    f"  overrides: ['run.root={tmp_path}/runs']\nspace:\n  model.depth: [8]\n")
    r = run_main("submit", "configs/slurm/local.yaml", "slurm.partition=nosuch", "--sweep",
                 str(spec))
    assert r.returncode == 2 and "sbatch refused the job" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


def test_the_dry_run_piped_into_sbatch_test_only_checks_the_cluster(tmp_path):
    """What the dry run says checks a script against the cluster (partitions, features, sizes:
    the dry run itself knows none of them) does: sbatch reads the script from standard input."""
    for extra, verdict in ((), "to start at"), (("slurm.partition=nope",), "invalid partition"):
        r = run_main("submit", *JOB, f"run.root={tmp_path}", "--dry-run", *extra)
        assert r.returncode == 0 and "| sbatch --test-only" in r.stderr, r.stderr
        checked = subprocess.run(["sbatch", "--test-only"], input=r.stdout, text=True,
                                 capture_output=True, timeout=60)
        assert (checked.returncode == 0) == (not extra) and verdict in checked.stderr, \
            checked.stderr
    assert not tmp_path.joinpath("quickstart").exists()
