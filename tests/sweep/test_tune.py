"""`reslab sweep` with a real local Ray: results, W&B grouping, a killed trial worker is retried
from its checkpoint, a trial that keeps failing is reported, a killed driver resumes, and a
resume unpickles nothing from the sweep directory. The Ray
sweeps run as fresh processes (the sweep driver and its Ray are what is killed); the refusals
before Ray starts run in this process."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from reslab.config.load import derive
from reslab.run import train
from reslab.sweep import spec as S
from reslab.sweep import tune
from reslab.tracking.records import open_run, write_summary
from reslab.tracking.rundir import SweepDir
from support import RESLAB, ROOT, reslab, wait_for
from wandb_files import run_info


def write_spec(tmp_path, *, epochs=3, depths=(8, 14), max_failures=1, concurrent=0) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: tiny
base:
  recipes: [{ROOT}/configs/quickstart.yaml]
  overrides: [trainer.max_epochs={epochs}, data.batch_size=256, run.test=false,
              "run.root={tmp_path}/runs"]
space:
  model.depth: [{", ".join(map(str, depths))}]
  model.shortcut: [none, A]
max_failures: {max_failures}
max_concurrent: {concurrent}
""")
    return spec


def sweep_dir(spec: Path) -> SweepDir:
    return S.sweep_dir(S.load_spec(spec))


def rows(out: SweepDir) -> list[dict]:
    with open(out.results) as f:
        return list(csv.DictReader(f))


def session(sid: int) -> list[int]:
    """The processes of session `sid`: a sweep driver started in its own session, its Ray
    (GCS, raylet, ...) and Ray's workers, which keep the session though not the process group."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and os.getsid(int(p.name)) == sid:
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def kill_session(sid: int) -> None:
    for pid in session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def ray_trial_workers(sid: int) -> list[int]:
    """The Ray trial workers of the sweep driver `sid` (not those of any other Ray here)."""
    pids = []
    for pid in session(sid):
        try:
            if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


@pytest.fixture
def start_sweep():
    """`start_sweep(spec)` -> the `reslab sweep` driver in a fresh process and session; whatever
    is left of it and its Ray is killed after the test, and its Ray temp dir removed."""
    started = []

    def start(spec: Path, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([*RESLAB, "sweep", str(spec), "--cpus", "2", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        kill_session(proc.pid)
        proc.wait(timeout=30)
        # A killed driver leaves its private Ray's temp dir (tune.start_ray) behind.
        shutil.rmtree(Path(tempfile.gettempdir()) / f"reslab-ray-{os.getuid()}-{proc.pid}",
                      ignore_errors=True)


def first_checkpoint(out: SweepDir):
    return next(iter(out.path.glob("*/checkpoints/last.ckpt")), None)


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.slow
def test_a_sweep_writes_results_and_groups_trials_in_wandb(tmp_path):
    canary = "canary-ray-41be7a"
    spec = write_spec(tmp_path)
    r = reslab("sweep", spec, "--cpus", "2", timeout=600, env={"WANDB_API_KEY": canary})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = sweep_dir(spec)
    table = rows(out)
    assert len(table) == 4 and {t["status"] for t in table} == {"completed"}
    assert out.best_config.is_file()
    assert "4 done, 0 running, 0 failed" in r.stdout
    timing = json.loads((out.path / "timing.json").read_text())  # wall vs Σ trial time ÷ 2
    assert timing["trials"] == 4 and timing["concurrency"] == 2 and timing["trial_s_sum"] > 0
    assert timing["wall_s"] > timing["ideal_s"] > 0 and "[sweep] wall" in r.stdout
    assert timing["startup_s"] > 0 and timing["running_s"] > 0 and timing["teardown_s"] > 0
    assert timing["startup_s"] + timing["running_s"] + timing["teardown_s"] == pytest.approx(
        timing["wall_s"], abs=0.05)
    for t in table:
        trial = out.trial(t["trial"])
        assert json.loads(trial.summary.read_text())["status"] == "completed"
        wandb_file, = trial.path.glob("wandb/offline-run-*/*.wandb")
        info = run_info(wandb_file)
        assert info["group"] == "tiny" and info["name"] == t["trial"]
        assert info["config"]["model.depth"] == int(t["model.depth"])
        assert info["config"]["model.shortcut"] == t["model.shortcut"]
    leaks = [p for p in out.path.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaks, f"the W&B key leaked into {leaks}"  # trial dirs and Ray's results


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("max_failures", [1, 0])
def test_a_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path, start_sweep,
                                                               max_failures):
    spec = write_spec(tmp_path, epochs=40, depths=(8,), max_failures=max_failures, concurrent=1)
    proc = start_sweep(spec)
    out = sweep_dir(spec)
    ckpt = wait_for(lambda: first_checkpoint(out), 300, "a trial's first checkpoint")
    victim = ckpt.parent.parent.name
    os.kill(wait_for(lambda: ray_trial_workers(proc.pid), 30, "the trial's Ray worker")[0],
            signal.SIGKILL)
    log, _ = proc.communicate(timeout=600)
    table = {t["trial"]: t for t in rows(out)}
    if max_failures:
        assert proc.returncode == 0, log[-3000:]
        assert {t["status"] for t in table.values()} == {"completed"}
        summary = json.loads(out.trial(victim).summary.read_text())
        assert summary["resumed_at_steps"] and summary["resumed_at_steps"][0] > 0
    else:
        assert proc.returncode == 1, log[-3000:]
        assert table[victim]["status"] == "ERROR" and table[victim]["error"]
        others = [t for name, t in table.items() if name != victim]
        assert others and {t["status"] for t in others} == {"completed"}


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_driver_continues_with_resume(tmp_path, start_sweep):
    spec = write_spec(tmp_path, epochs=25, depths=(8,), concurrent=1)
    proc = start_sweep(spec)
    out = sweep_dir(spec)
    done = wait_for(lambda: next((p.parent for p in out.path.glob("*/summary.json")
                                  if '"completed"' in p.read_text()), None), 300, "a finished trial")
    finished = (done / "summary.json").read_text()
    kill_session(proc.pid)  # the driver, the Ray it started and Ray's workers
    proc.wait(timeout=30)
    resumed = start_sweep(spec, "--resume")
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "[sweep] resuming: 1 of 2 trials completed, 1 to run" in log
    assert "2 done, 0 running, 0 failed" in log
    table = rows(out)
    assert sorted(t["trial"] for t in table) == sorted({t["trial"] for t in table})
    assert len(table) == 2 and {t["status"] for t in table} == {"completed"}
    assert (done / "summary.json").read_text() == finished, "a finished trial was not rerun"


class Payload:
    """Unpickled, it creates `marker`: what a crafted sweep directory could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.ray
@pytest.mark.integration
def test_resume_reads_no_pickle_from_tune_s_state_and_finishes_the_sweep(tmp_path):
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    s = S.load_spec(spec)
    out = S.sweep_dir(s)
    point, other = (p for p in S.grid_points(s))
    finished = open_run(s.trial_cfg(point), S.trial_name(point))
    write_summary(finished, {"status": "completed", "val/err": 0.25, "epoch": 1, "wall_s": 1.0})
    before = finished.summary.read_bytes()
    # The other trial trained to its last epoch but was stopped there (as ASHA stops the trials
    # that reach max_t): resumed, it trains no further and still reports to Tune.
    stopped = open_run(s.trial_cfg(other), S.trial_name(other))
    train.fit(derive(s.trial_cfg(other), {"logger.wandb.mode": "disabled"}), resume=stopped)
    write_summary(stopped, {**json.loads(stopped.summary.read_text()), "status": "failed",
                            "error": "SystemExit: 0"})
    # Every file Tuner.restore would unpickle (tuner.pkl, the experiment and searcher states,
    # a trial's params) holds the payload; so does a file of garbage.
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(marker))
    for name in ["tuner.pkl", "experiment_state-2026-11-22_00-00-00.json",
                 "basic-variant-state-2026-11-22_00-00-00.json", "searcher-state.pkl",
                 "run_trial_00000/params.pkl", "trainable.pkl"]:
        (out.tune / name).parent.mkdir(parents=True, exist_ok=True)
        (out.tune / name).write_bytes(payload)
    (out.tune / "garbage").write_bytes(b"\x80\x05garbage")
    r = reslab("sweep", spec, "--cpus", "2", "--resume", timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not marker.exists(), "a pickle from the sweep directory was loaded"
    assert finished.summary.read_bytes() == before, "a finished trial was rerun"
    table = {t["trial"]: t for t in rows(out)}
    assert sorted(table) == sorted([S.trial_name(point), S.trial_name(other)])
    assert table[S.trial_name(point)]["val/err"] == "0.25"
    assert {t["status"] for t in table.values()} == {"completed"}
    assert json.loads(stopped.summary.read_text())["resumed_at_steps"][0] > 0


def test_resume_without_a_sweep_and_a_rerun_over_one_are_refused_before_ray(tmp_path, cli,
                                                                            monkeypatch):
    def no_ray(*_):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(tune, "start_ray", no_ray)
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    out = sweep_dir(spec)
    r = cli("sweep", spec, "--cpus", "2", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr and not out.path.exists()
    out.tune.mkdir(parents=True)
    r = cli("sweep", spec, "--cpus", "2")
    assert r.returncode == 2 and "already holds a sweep: pass --resume" in r.stderr
    out.tune.rmdir()
    out.results.write_text("trial,status\n")  # sweep.csv alone marks a sweep too
    r = cli("sweep", spec, "--cpus", "2")
    assert r.returncode == 2 and "already holds a sweep: pass --resume" in r.stderr
