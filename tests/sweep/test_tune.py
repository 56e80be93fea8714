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
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from reslab.config.load import derive
from reslab.run import train
from reslab.sweep import spec as S
from reslab.sweep import trials, tune
from reslab.tracking.records import locked, open_run, write_summary
from reslab.tracking.rundir import SweepDir
from support import RESLAB, ROOT, default_sigint, reslab, wait_for
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


def open_trial(spec: S.Spec, point: dict):
    """A trial's run directory, as the sweep's worker opens it."""
    return open_run(spec.trial_cfg(point), S.sweep_dir(spec).trial(S.trial_name(point)))


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
                                start_new_session=True, preexec_fn=default_sigint)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        kill_session(proc.pid)
        proc.wait(timeout=30)
        # A killed driver leaves its private Ray's temp dir (session.start_ray) behind.
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
    finished = open_trial(s, point)
    write_summary(finished, {"status": "completed", "val/err": 0.25, "epoch": 1, "wall_s": 1.0})
    before = finished.summary.read_bytes()
    # The other trial trained to its last epoch but was stopped there (as ASHA stops the trials
    # that reach max_t): resumed, it trains no further and still reports to Tune.
    stopped = open_trial(s, other)
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


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_and_ctrl_c_stop_the_sweep_and_resume_continues_its_trials(tmp_path, start_sweep,
                                                                          cli):
    """SIGTERM exits 143 and Ctrl-C 130 (Ray's crash handler took SIGTERM, Tune's took Ctrl-C and
    ended the running trial as if ASHA had stopped it: `stopped`, so `--resume` skipped it as
    finished). The trial that was running is recorded `interrupted` and a resume continues it
    from its checkpoint; a second driver is refused while one runs."""
    spec = write_spec(tmp_path, epochs=60, depths=(8,), concurrent=1)
    out = sweep_dir(spec)
    for signum, code, args in [(signal.SIGTERM, 143, ()), (signal.SIGINT, 130, ("--resume",))]:
        began = time.time()
        proc = start_sweep(spec, *args)
        ckpt = wait_for(lambda t0=began: next((c for c in out.path.glob("*/checkpoints/last.ckpt")
                                               if c.stat().st_mtime > t0), None),
                        300, "a checkpoint from this driver's trial")
        r = cli("sweep", spec, "--cpus", "2", "--resume")  # while this driver runs
        assert r.returncode == 2 and "is in use by pid" in r.stderr, r.stderr
        os.kill(proc.pid, signum)
        log, _ = proc.communicate(timeout=120)
        assert proc.returncode == code, log[-3000:]
        assert "--resume` continues them" in log
        record = json.loads((ckpt.parent.parent / "summary.json").read_text())
        assert record["status"] == "interrupted", record
    log, _ = (resumed := start_sweep(spec, "--resume")).communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert {t["status"] for t in rows(out)} == {"completed"}
    summaries = [json.loads(p.read_text()) for p in out.path.glob("*/summary.json")]
    assert any((s.get("resumed_at_steps") or [0])[0] > 0 for s in summaries)


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*_):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(tune, "start_ray", refuse)


def test_an_interrupt_before_any_trial_started_says_how_to_start_again(tmp_path, cli,
                                                                         monkeypatch):
    """Ctrl-C while Ray was starting printed "`--resume` continues them", and `--resume` then
    said "nothing to resume"; the same command starts the sweep."""
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "start_ray", interrupted)
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    r = cli("sweep", spec, "--cpus", "2")
    assert r.returncode == 130 and "no trial had started; `reslab sweep " in r.stderr, r.stderr
    assert "--resume" not in r.stderr
    monkeypatch.setattr(tune, "start_ray", lambda *_: pytest.fail("Ray was started"))
    assert cli("sweep", spec, "--cpus", "2", "--dry-run").returncode == 0


def snapshot(path: Path) -> dict:
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_resume_that_changes_the_sweep_is_refused_before_anything_is_written(tmp_path, cli,
                                                                             no_ray):
    """sweep.yaml records what the sweep is; a resume may change resources, retries and how the
    trials compute and log, nothing else: new trials would have trained another experiment
    beside the old ones (a changed batch size, learning rate or length, another grid)."""
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    s = S.load_spec(spec)
    out = S.sweep_dir(s)
    point = S.grid_points(s)[0]
    open_trial(s, point)  # a sweep that had begun
    tune.write_definition(s, out)
    before = snapshot(out.path)
    for args, said in [(["data.batch_size=128"], "cannot change data.batch_size (256 -> 128)"),
                       (["optim.lr=0.05"], "cannot change optim.lr"),
                       (["trainer.max_epochs=2"], "cannot change trainer.max_epochs (1 -> 2)"),
                       (["model.width=2"], "cannot change model.width")]:
        r = cli("sweep", spec, "--cpus", "2", "--resume", *args)
        assert r.returncode == 2 and said in r.stderr and "another name" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        r = cli("sweep", spec, "--cpus", "2", "--resume", "--dry-run", *args)
        assert r.returncode == 2 and said in r.stderr, r.stderr
    spec.write_text(spec.read_text().replace("[none, A]", "[none, B]"))
    r = cli("sweep", spec, "--cpus", "2", "--resume")
    assert r.returncode == 2 and "cannot change space.model.shortcut" in r.stderr, r.stderr
    text = spec.read_text().replace("[none, B]", "[none, A]")  # keys reordered: other trials
    depth, shortcut = (line for line in text.splitlines() if line.startswith("  model."))
    spec.write_text(text.replace(f"{depth}\n{shortcut}", f"{shortcut}\n{depth}"))
    r = cli("sweep", spec, "--cpus", "2", "--resume")
    assert r.returncode == 2 and "cannot change space_keys" in r.stderr, r.stderr
    spec.write_text(text)
    assert snapshot(out.path) == before
    spec.write_text(spec.read_text().replace("[none, B]", "[A, none]").replace(
        "max_failures: 1", "max_failures: 3"))  # a grid's values in another order: its trials
    r = cli("sweep", spec, "--cpus", "2", "--resume", "--dry-run", "data.num_workers=1",
            "logger.wandb.mode=disabled", f"run.root={tmp_path}/./runs/")
    assert r.returncode == 0, r.stderr  # retries, workers and logging a resume may change


def test_the_dry_run_refuses_what_the_run_would(tmp_path, cli, no_ray):
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    out = sweep_dir(spec)
    r = cli("sweep", spec, "--cpus", "2", "--resume", "--dry-run")
    assert r.returncode == 2 and "nothing to resume" in r.stderr
    out.results.parent.mkdir(parents=True)
    out.results.write_text("trial,status\n")
    r = cli("sweep", spec, "--cpus", "2", "--dry-run")
    assert r.returncode == 2 and "already holds a sweep: pass --resume" in r.stderr
    random = tmp_path / "random.yaml"  # only the ends were checked: 8 and 26 are depths, 9 not
    random.write_text(spec.read_text().replace("name: tiny", "name: rnd").replace(
        "model.depth: [8]", "model.depth: {randint: [8, 27]}").replace(
        "model.shortcut: [none, A]", "model.shortcut: [A]") + "search: random\nnum_samples: 5\n")
    for args in [["--dry-run"], []]:
        r = cli("sweep", random, "--cpus", "2", *args)
        assert r.returncode == 2 and "model.depth" in r.stderr and "6n+2" in r.stderr, r.stderr
    assert not sweep_dir(random).path.exists()


@pytest.mark.parametrize("address,said", [
    ("foo:bar", "must be a Ray cluster's HOST:PORT"), ("", "must be a Ray cluster's HOST:PORT"),
    ("host:0", "port 1 to 65535"), ("127.0.0.1:1", "no Ray cluster answers at --address"),
    ("[::1]:6379", "Ray does not connect to IPv6"), ("::1:6379", "Ray does not connect to IPv6"),
])
def test_an_address_without_a_ray_cluster_is_one_sentence(tmp_path, cli, no_ray, address, said):
    """`127.0.0.1:1` left ray.init retrying for minutes, deaf to Ctrl-C; `foo:bar` was a
    traceback; '' was taken for no address."""
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    r = cli("sweep", spec, "--address", address)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not sweep_dir(spec).path.exists()


def test_an_address_where_another_service_answers_is_one_sentence(tmp_path, cli, no_ray):
    """slurmctld's port answered the TCP connect: ray.init then retried for minutes and the
    driver had written .lock and sweep.yaml. Here a server that reads and closes, as one that
    does not speak gRPC does."""
    server = socket.create_server(("127.0.0.1", 0))
    closer = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    closer.start()
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    r = cli("sweep", spec, "--address", f"127.0.0.1:{server.getsockname()[1]}")
    closer.join(timeout=30)
    server.close()
    assert r.returncode == 2 and "answers, but not as a Ray cluster" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not sweep_dir(spec).path.exists()


def test_a_running_sweep_refuses_a_second_driver(tmp_path, cli, no_ray):
    spec = write_spec(tmp_path, epochs=1, depths=(8,))
    s = S.load_spec(spec)
    out = S.sweep_dir(s)
    open_trial(s, S.grid_points(s)[0])
    with locked(out):  # the first driver's
        before = snapshot(out.path)
        for dry in ([], ["--dry-run"]):  # the dry run refuses what the run would
            r = cli("sweep", spec, "--cpus", "2", "--resume", *dry)
            assert r.returncode == 2, r.stderr
            assert f"sweep directory {out.path} is in use by pid" in r.stderr
            assert snapshot(out.path) == before
    assert cli("sweep", spec, "--cpus", "2", "--resume", "--dry-run").returncode == 0


def test_settle_records_the_trials_a_stopped_sweep_left_behind(tmp_path):
    """Ray gone, the trials that were running (or that Tune ended as if the scheduler had) are
    `interrupted`, which a resume continues; a trial ASHA stopped early, and a finished one, stay
    as they are."""
    spec = write_spec(tmp_path, epochs=1, depths=(8, 14))
    s = S.load_spec(spec)
    out = S.sweep_dir(s)
    points = S.grid_points(s)
    statuses = ["running", "stopped", "stopped", "completed"]
    for point, status in zip(points, statuses):
        write_summary(open_trial(s, point), {"status": status})
    pruned = {S.trial_name(points[2])}
    tune.settle(out, points, pruned)
    after = [json.loads(out.trial(S.trial_name(p)).summary.read_text())["status"] for p in points]
    assert after == ["interrupted", "interrupted", "stopped", "completed"]
    assert [trials.completed(out, p) for p in points] == [False, False, True, True]
