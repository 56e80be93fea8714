"""Faults and hostile input: each test injects one and checks that nothing is lost and no code
runs. README's reliability table lists them."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from reslab import fileio
from reslab.config import load as C
from reslab.errors import TrainingError, UserError
from reslab.run import train
from reslab.tasks.classification import ClassificationTask
from reslab.tracking import checkpoint, records, rundir
from support import TINY, file_size_limit, wait_for
from support import run_dir as _run_dir


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    real_step = ClassificationTask.training_step

    def poisoned(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 7 else loss

    monkeypatch.setattr(ClassificationTask, "training_step", poisoned)
    cfg = C.load([], [*TINY, "trainer.max_epochs=3", "logger.wandb.mode=disabled",
                      f"run.root={tmp_path}", "trainer.progress_bar=false"])
    # Step 7's NaN gradient breaks the weights: step 8 is the first whose loss is NaN.
    with pytest.raises(TrainingError, match="NaN or Inf at step 8"):
        train.fit(cfg)
    run = _run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 8" in summary["error"]
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert state["global_step"] == 5  # the end of epoch 1, before the NaN
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
               if v.is_floating_point())


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_runs_nothing(cli, tmp_path):
    r = cli("train", *TINY, "trainer.max_epochs=1", "logger.wandb.mode=disabled",
               "run.test=false", f"run.root={tmp_path}/runs")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path / "runs")
    torch.save({"state_dict": {}, "payload": _Exploit()}, run / "checkpoints/best.ckpt")
    t = cli("test", run, cwd=tmp_path)
    assert t.returncode == 2 and "refused: loading it could run code" in t.stderr, t.stderr
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_url_is_refused(cli, tmp_path):
    r = cli("train", *TINY, "model.weights=https://example.com/evil.ckpt",
               f"run.root={tmp_path}")
    assert r.returncode == 2 and "model.weights=https://example.com/evil.ckpt" in r.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d", "a/../../b", ".."])
def test_run_names_cannot_escape_the_run_root(cli, tmp_path, name):
    r = cli("train", *TINY, f"run.name={name}", f"run.root={tmp_path}/runs")
    assert r.returncode == 2 and "run.name" in r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_kill_9_during_a_checkpoint_write_leaves_the_previous_one_intact(tmp_path):
    target = tmp_path / "last.ckpt"
    checkpoint.save({"step": 1, "w": torch.ones(4)}, target)
    writer = subprocess.Popen([sys.executable, "-c", f"""
import torch
from reslab.tracking import checkpoint
big = {{"step": 2, "w": torch.zeros(16 * 2**20)}}  # 64 MB: the write takes a while
while True:
    checkpoint.save(big, {str(target)!r})
"""])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".last.ckpt.tmp-*")):
        assert time.monotonic() < deadline and writer.poll() is None, "the write never started"
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    state = checkpoint.load(target)
    assert state["step"] in (1, 2)  # the old file, or a complete new one: never a torn one
    if state["step"] == 2:
        assert state["w"].numel() == 16 * 2**20


def test_a_full_disk_fails_naming_the_path_and_keeps_earlier_files(tmp_path):
    """torch's zip writer turned the write error into a RuntimeError ('unexpected pos')."""
    target = tmp_path / "last.ckpt"
    checkpoint.save({"step": 1}, target)
    with file_size_limit(64 << 10), pytest.raises(
            OSError, match=f"cannot write checkpoint {target}: File too large"):
        checkpoint.save({"step": 2, "w": torch.zeros(100_000)}, target)
    assert checkpoint.load(target)["step"] == 1
    assert not list(tmp_path.glob(".last.ckpt.tmp-*")), "no temporary file left behind"


def test_a_failed_atomic_write_names_its_file_and_leaves_nothing(tmp_path):
    """A full disk said only "No space left on device", not which file."""
    target = tmp_path / "summary.json"
    with file_size_limit(1024), pytest.raises(OSError) as failed:
        fileio.write_atomic(target, "x" * 4096)
    assert failed.value.filename == str(target) and failed.value.errno == errno.EFBIG
    assert not list(tmp_path.iterdir())


def test_a_full_disk_mid_run_is_one_sentence_and_the_record_says_failed(cli, tmp_path):
    """It was a traceback; now exit 1 (the machine's fault, not bad input) and a run that
    `--resume` continues once there is room."""
    with file_size_limit(64 << 10):
        r = cli("train", *TINY, "trainer.max_epochs=1", "logger.wandb.mode=disabled",
                "run.test=false", "trainer.progress_bar=false", f"run.root={tmp_path}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "reslab train: failed: cannot write checkpoint" in lines[0], lines[0]
    assert "File too large" in lines[0], lines[0]
    run = _run_dir(tmp_path)
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not list(run.rglob(".*.tmp-*")), "no temporary file left behind"


def test_secrets_never_reach_the_run_directory_or_the_job_script(cli, tmp_path):
    canary = "canary-5e1f0a9b7c"
    env = {"WANDB_API_KEY": canary}
    r = cli("train", *TINY, "trainer.max_epochs=1", f"run.root={tmp_path}/runs", env=env)
    assert r.returncode == 0, r.stderr
    s = cli("submit", "configs/quickstart.yaml", "configs/slurm/local.yaml", "--dry-run",
               f"run.root={tmp_path}/runs", env=env)
    assert s.returncode == 0 and canary not in s.stdout + s.stderr
    leaks = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()
             and canary.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert list((tmp_path / "runs").rglob("offline-run-*")), "the W&B files were written"


def test_w_and_b_unreachable_does_not_stop_training(cli, tmp_path):
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_INIT_TIMEOUT": "4",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "WANDB_BASE_URL": "http://127.0.0.1:9"}
    r = cli("train", *TINY, "trainer.max_epochs=1", "logger.wandb.mode=online",
            "run.test=false", f"run.root={tmp_path}", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    said = [line for line in r.stderr.splitlines() if "W&B" in line]  # one line, no source
    assert len(said) == 1 and said[0].startswith("reslab train: warning: W&B could not start ("), \
        r.stderr
    run = _run_dir(tmp_path)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert (run / "metrics.csv").stat().st_size > 0


def test_w_and_b_dying_mid_run_does_not_stop_training(tmp_path, monkeypatch):
    """SLURM's SIGTERM reaches W&B's service too: its next log raised ConnectionResetError in
    rank 0 between the signal and the step boundary, and the DDP job died instead of stopping."""
    import wandb.sdk.wandb_run

    calls = []

    def dead_service(self, *args, **kwargs):
        calls.append(1)
        raise ConnectionResetError("Connection lost")

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", dead_service)
    cfg = C.load([], [*TINY, "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
                      "run.test=false", f"run.root={tmp_path}", "logger.wandb.log_model=false"])
    with pytest.warns(UserWarning, match="W&B stopped logging .ConnectionResetError"):
        summary = train.fit(cfg)
    assert summary["status"] == "completed" and summary["epoch"] == 2
    assert len(calls) == 1  # W&B sat out the rest of the run
    assert len(records.read_metrics(rundir.RunDir(_run_dir(tmp_path)))) > 2


def test_resume_falls_back_to_the_newest_valid_checkpoint_not_to_step_0(cli, tmp_path):
    r = cli("train", *TINY, "trainer.max_epochs=2", "logger.wandb.mode=disabled",
               "run.test=false", "trainer.checkpoint_every_n_steps=0", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    best_step = torch.load(run / "checkpoints/best.ckpt", weights_only=True)["global_step"]
    (run / "checkpoints/last.ckpt").write_bytes(b"\x00" * 100)  # a torn last.ckpt
    again = cli("train", "--resume", run, "trainer.max_epochs=3")
    assert again.returncode == 0, again.stderr
    assert "last.ckpt" in again.stderr and "newest valid checkpoint" in again.stderr
    assert f"resuming at step {best_step}" in again.stdout and best_step > 0


def _trained(cli, tmp_path, *extra) -> Path:
    r = cli("train", *TINY, "trainer.max_epochs=1", "logger.wandb.mode=disabled",
            "run.test=false", f"run.root={tmp_path}", *extra)
    assert r.returncode == 0, r.stderr
    return _run_dir(tmp_path)


def _files(run: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_second_process_cannot_train_in_a_run_directory_in_use(cli, tmp_path):
    run = _trained(cli, tmp_path)
    before = _files(run)
    with records.locked(rundir.RunDir(run)):  # as a requeued job's old attempt would
        r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 2 and f"is in use by pid {os.getpid()}" in r.stderr, r.stderr
    assert _files(run) == before


def test_testing_or_exporting_into_a_run_in_use_is_refused(cli, tmp_path):
    """`reslab test RUN` while RUN trained was not refused: its fields were overwritten when
    training ended. An export elsewhere only reads the run, so it goes ahead."""
    run = _trained(cli, tmp_path)
    before = _files(run)
    with records.locked(rundir.RunDir(run)):
        for args in (["test", run], ["export", run], ["export", run / "checkpoints/last.ckpt"]):
            r = cli(*args)
            assert r.returncode == 2 and f"is in use by pid {os.getpid()}" in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1
        assert cli("export", run, "--out", tmp_path / "elsewhere.pt").returncode == 0
    assert _files(run) == before and not (run / "export").exists()


def test_a_refusal_under_the_lock_leaves_no_lock_file_and_a_waiter_holds_the_one_there(tmp_path):
    """A refusal inside the lock (a resume it cannot honour, a checkpoint that does not fit)
    wrote .lock into the run. Now the lock file it made goes with it, and a process that was
    waiting on that file (a sweep's trial waits) locks the file at the path instead of the
    removed one, so a third process still finds the run in use."""
    run = rundir.RunDir(tmp_path)
    held, release = threading.Event(), threading.Event()

    def opened() -> int:  # open descriptions of the lock file in this process
        return sum(os.readlink(f"/proc/self/fd/{fd}") == str(run.lock_file)
                   for fd in os.listdir("/proc/self/fd") if os.path.islink(f"/proc/self/fd/{fd}"))

    def waiter():
        with records.locked(run, wait=30):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=waiter)
    with pytest.raises(UserError, match="refused"), records.locked(run):
        thread.start()
        wait_for(lambda: opened() == 2, 30, "the waiter to open the lock file")
        raise UserError("refused")
    try:
        assert held.wait(30)
        with pytest.raises(UserError, match=f"is in use by pid {os.getpid()}"):
            records.check_free(run)
    finally:
        release.set()
        thread.join(30)
    assert run.lock_file.read_text().startswith(f"pid {os.getpid()} ")  # the waiter's own


def test_a_refusal_leaves_an_existing_lock_file_as_it_was(tmp_path):
    run = rundir.RunDir(tmp_path)
    run.lock_file.write_text("pid 1 on elsewhere\n")
    with pytest.raises(UserError), records.locked(run):
        assert run.lock_file.read_text().startswith(f"pid {os.getpid()} ")
        raise UserError("refused")
    assert run.lock_file.read_text() == "pid 1 on elsewhere\n"


def test_a_run_directory_that_cannot_be_written_is_one_sentence(cli, tmp_path):
    run = _trained(cli, tmp_path)
    (run / ".lock").unlink()
    (run / ".lock").mkdir()  # as a read-only run directory, opening the lock file fails
    before = _files(run)
    for args in (["test", run], ["train", "--resume", run, "trainer.max_epochs=2"],
                 ["export", run]):
        r = cli(*args)
        assert r.returncode == 2 and "cannot be written (.lock: Is a directory)" in r.stderr, \
            r.stderr
    assert _files(run) == before


def test_a_resume_that_cannot_restore_leaves_the_record_as_it_was(cli, tmp_path):
    run = _trained(cli, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("depth: 8", "depth: 14"))
    before = _files(run)
    r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 2 and "does not fit the run's model" in r.stderr, r.stderr
    assert _files(run) == before


def test_a_trained_run_without_checkpoints_is_not_restarted_from_step_0(cli, tmp_path):
    run = _trained(cli, tmp_path)
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    before = _files(run)
    r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 2 and "holds no checkpoint to resume from" in r.stderr, r.stderr
    assert _files(run) == before


def test_an_accelerator_the_machine_lacks_is_refused_before_the_run_directory(cli, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = cli("train", *TINY, "trainer.accelerator=gpu", f"run.root={tmp_path}/runs")
    assert r.returncode == 2 and "trainer.accelerator=gpu" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("overrides,words", [
    (["data.val_size=5000"], "leaves no training data"),
    (["data.classes=[3, 11]"], "data.classes has labels with no images: [11]"),
])
def test_data_that_cannot_be_used_is_refused_before_the_run_directory(cli, tmp_path, overrides,
                                                                      words):
    r = cli("train", *TINY, *overrides, f"run.root={tmp_path}/runs")
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


def test_reslab_test_records_the_overrides_it_ran_with(cli, tmp_path):
    run = _trained(cli, tmp_path)
    r = cli("test", run, "data.batch_size=64")
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tests"][-1]["overrides"] == ["data.batch_size=64"]
    assert "test/err" in summary["tests"][-1]["metrics"]


def test_a_scheduler_s_early_stop_is_recorded_as_stopped_not_failed(tmp_path, monkeypatch):
    """Ray Tune ends a trial that ASHA stops with SystemExit(0) from inside the training loop."""
    real_step = ClassificationTask.training_step

    def stopped_by_tune(self, batch, batch_idx):
        if self.global_step == 3:
            raise SystemExit(0)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "training_step", stopped_by_tune)
    cfg = C.load([], [*TINY, "trainer.max_epochs=2", "logger.wandb.mode=disabled",
                      f"run.root={tmp_path}", "trainer.progress_bar=false"])
    with pytest.raises(SystemExit):
        train.fit(cfg)
    assert json.loads((_run_dir(tmp_path) / "summary.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("where", ["run_trainer", "test_at_the_end"])
def test_an_interrupt_outside_a_step_boundary_is_recorded_and_says_how_to_resume(
        cli, tmp_path, monkeypatch, where):
    """Ctrl-C just after the run directory was made left summary.json `running` for good; one
    during the test at the end exited 130 with no resume sentence."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    original = getattr(train, where)
    monkeypatch.setattr(train, where, interrupted)
    r = cli("train", *TINY, "trainer.max_epochs=1", f"run.root={tmp_path}")
    run = _run_dir(tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().endswith(f"interrupted; resume with `reslab train --resume {run}`")
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(train, where, original)
    r = cli("train", "--resume", run)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
