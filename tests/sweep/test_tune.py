"""`reslab sweep` with a real local Ray: results, W&B grouping, a killed trial worker is retried
from its checkpoint, a trial that keeps failing is reported, a killed driver resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, reslab, wait_for
from wandb_files import run_info

pytestmark = pytest.mark.integration


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


def rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv") as f:
        return list(csv.DictReader(f))


def test_a_sweep_writes_results_and_groups_trials_in_wandb(tmp_path):
    canary = "canary-ray-41be7a"
    r = reslab("sweep", write_spec(tmp_path), "--cpus", "2", timeout=600,
               env={"WANDB_API_KEY": canary})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = tmp_path / "runs/tiny"
    table = rows(out)
    assert len(table) == 4 and {t["status"] for t in table} == {"completed"}
    assert (out / "best_config.yaml").is_file()
    assert "4 done, 0 running, 0 failed" in r.stdout
    for t in table:
        trial = out / t["trial"]
        assert json.loads((trial / "summary.json").read_text())["status"] == "completed"
        wandb_file, = trial.glob("wandb/offline-run-*/*.wandb")
        info = run_info(wandb_file)
        assert info["group"] == "tiny" and info["name"] == t["trial"]
        assert info["config"]["model.depth"] == int(t["model.depth"])
        assert info["config"]["model.shortcut"] == t["model.shortcut"]
    leaks = [p for p in out.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaks, f"the W&B key leaked into {leaks}"  # trial dirs and Ray's results


def ray_trial_workers() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and b"ImplicitFunc" in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def start_sweep(spec: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reslab.cli", "sweep", str(spec), "--cpus",
                             "2", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def first_checkpoint(out: Path):
    return next(iter(out.glob("*/checkpoints/last.ckpt")), None)


@pytest.mark.parametrize("max_failures", [1, 0])
def test_a_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path, max_failures):
    spec = write_spec(tmp_path, epochs=40, depths=(8,), max_failures=max_failures, concurrent=1)
    proc = start_sweep(spec)
    out = tmp_path / "runs/tiny"
    ckpt = wait_for(lambda: first_checkpoint(out), 300, "a trial's first checkpoint")
    victim = ckpt.parent.parent.name
    os.kill(wait_for(ray_trial_workers, 30, "the trial's Ray worker")[0], signal.SIGKILL)
    log, _ = proc.communicate(timeout=600)
    table = {t["trial"]: t for t in rows(out)}
    if max_failures:
        assert proc.returncode == 0, log[-3000:]
        assert {t["status"] for t in table.values()} == {"completed"}
        summary = json.loads((out / victim / "summary.json").read_text())
        assert summary["resumed_at_steps"] and summary["resumed_at_steps"][0] > 0
    else:
        assert proc.returncode == 1, log[-3000:]
        assert table[victim]["status"] == "ERROR" and table[victim]["error"]
        others = [t for name, t in table.items() if name != victim]
        assert others and {t["status"] for t in others} == {"completed"}


def test_a_killed_driver_continues_with_resume(tmp_path):
    spec = write_spec(tmp_path, epochs=25, depths=(8,), concurrent=1)
    proc = start_sweep(spec)
    out = tmp_path / "runs/tiny"
    done = wait_for(lambda: next((p.parent for p in out.glob("*/summary.json")
                                  if '"completed"' in p.read_text()), None), 300, "a finished trial")
    finished = (done / "summary.json").read_text()
    wait_for(lambda: any("TERMINATED" in p.read_text() for p in
                         (out / "tune").glob("experiment_state-*.json")), 60,
             "Tune to record the finished trial")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait(timeout=30)
    r = reslab("sweep", spec, "--cpus", "2", "--resume", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    table = rows(out)
    assert sorted(t["trial"] for t in table) == sorted({t["trial"] for t in table})
    assert len(table) == 2 and {t["status"] for t in table} == {"completed"}
    assert (done / "summary.json").read_text() == finished, "a finished trial was not rerun"


def test_a_corrupted_sweep_state_is_a_sentence_and_overwrites_nothing(tmp_path):
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    out = tmp_path / "runs/tiny"
    (out / "tune").mkdir(parents=True)
    (out / "tune/experiment_state-2026-11-22_00-00-00.json").write_text('{"trial_data": [tru')
    (out / "sweep.csv").write_text("trial,status\ndepth=8,shortcut=A,seed=0,completed\n")
    before = (out / "sweep.csv").read_text()
    r = reslab("sweep", spec, "--cpus", "2", "--resume", timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot resume the sweep" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (out / "sweep.csv").read_text() == before
