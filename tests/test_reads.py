"""What a run directory names is read only inside it: `reslab status` follows slurm/log only into
the run's slurm/ folder (or its array's folder beside it), reads only the log's tail, never opens
a FIFO, and passes scontrol only a job id. A crafted run directory made status print a line of
/etc/shadow."""

from __future__ import annotations

import os

import pytest

from reslab.config.load import load
from reslab.tracking.records import open_run, own_file, read_summary, weights_file
from reslab.tracking.rundir import RunDir, runs_in


@pytest.fixture
def crafted(tmp_path) -> RunDir:
    run = open_run(load([], [f"run.root={tmp_path}/runs"]))
    run.slurm.mkdir()
    (run.slurm / "job_id").write_text("4242\n")
    (tmp_path / "secret").write_text("root:$6$TOPSECRET:19000::::::\n")
    return run


def status_of(cli, run: RunDir) -> str:
    r = cli("status", run.path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


@pytest.mark.parametrize("pointer", ["{T}/secret", "/etc/shadow", "{RUN}/slurm/../../../../secret",
                                     "{RUN}/slurm/link.out"])
def test_a_log_outside_the_run_is_not_read(cli, crafted, tmp_path, pointer):
    (crafted.slurm / "link.out").symlink_to(tmp_path / "secret")
    (crafted.slurm / "log").write_text(
        pointer.replace("{T}", str(tmp_path)).replace("{RUN}", str(crafted.path)))
    out = status_of(cli, crafted)
    assert "TOPSECRET" not in out and "root:" not in out
    assert "outside the run's slurm/ folder" in out and "not read" in out


def test_the_run_s_own_log_and_its_array_s_are_read_from_the_end(cli, crafted):
    log = crafted.slurm / "slurm-4242.out"
    log.write_text("x" * 200_000 + "\nepoch 3/30 val/err=0.12\n")
    (crafted.slurm / "log").write_text(f"{log}\n")
    assert "log: epoch 3/30 val/err=0.12" in status_of(cli, crafted)
    array = crafted.path.parent / "array-1" / "slurm-4242_0.out"
    array.parent.mkdir()
    array.write_text("task 0 done\n")
    (crafted.slurm / "log").write_text(f"{array}\n")
    assert "log: task 0 done" in status_of(cli, crafted)


def test_a_fifo_named_as_the_log_is_not_opened(cli, crafted):
    os.mkfifo(crafted.slurm / "slurm-4242.out")  # opening it would wait for a writer forever
    (crafted.slurm / "log").write_text(str(crafted.slurm / "slurm-4242.out"))
    assert "job 4242" in status_of(cli, crafted)


@pytest.mark.parametrize("text", ["--help", "4242; reboot", "x" * 10_000, "-1"])
def test_only_a_job_id_goes_to_scontrol(cli, crafted, text):
    (crafted.slurm / "job_id").write_text(text)
    assert crafted.job_id() is None
    assert "job -" in status_of(cli, crafted)


def test_a_damaged_summary_is_shown_as_unknown(cli, crafted):
    for damage in ("[1, 2]", "not json", '"text"'):
        crafted.summary.write_text(damage)
        assert "status -" in status_of(cli, crafted)


def test_a_run_in_training_shows_its_last_validation(cli, crafted):
    """summary.json has the epoch and val/err only when an attempt ends: a run in training
    showed `epoch -  val/err -` while metrics.csv held its epochs."""
    crafted.summary.write_text('{"status": "running"}')
    crafted.metrics.write_text("step,epoch,val/err,train/loss\n5,1,0.5,2.3\n10,2,0.25,2.1\n"
                               "12,2,,2.0\n")
    assert "status running  epoch 2  val/err 0.25" in status_of(cli, crafted)
    for damage in ("step,epoch,val/err\n5,x,0.5\n", "\0\xff", "step\n"):
        crafted.metrics.write_text(damage)
        assert "status running  epoch -  val/err -" in status_of(cli, crafted)


def test_array_task_ids_are_job_ids(crafted):
    (crafted.slurm / "job_id").write_text("123_4\n")
    assert crafted.job_id() == "123_4"


def test_a_folder_s_runs_are_the_ones_inside_it(tmp_path):
    """model.weights=FOLDER (its newest completed run) and a sweep's trials list a folder: a
    link in it that leads elsewhere is not one of its runs."""
    elsewhere, folder = (open_run(load([], [f"run.root={tmp_path}/{n}"])) for n in ("out", "in"))
    for run in (elsewhere, folder):
        run.summary.write_text('{"status": "completed"}')
        run.last_ckpt.write_bytes(b"")
    (folder.path.parent / "zzz-link").symlink_to(elsewhere.path)
    assert runs_in(folder.path.parent) == [folder.path]
    assert weights_file(str(folder.path.parent)) == folder.last_ckpt


def test_a_run_s_records_are_read_only_as_files_inside_it(cli, crafted, tmp_path):
    """A summary.json that is a FIFO made status, test and resume wait forever; one that links
    out of the run read another place's file."""
    crafted.summary.write_text('{"status": "completed"}')
    assert read_summary(crafted) == {"status": "completed"}
    crafted.summary.unlink()
    crafted.summary.symlink_to(tmp_path / "secret")
    with pytest.raises(OSError, match="leads out of the run directory"):
        own_file(crafted, crafted.summary)
    assert read_summary(crafted) == {}
    r = cli("status", crafted.path)
    assert r.returncode == 2 and "leads out of its run directory" in r.stderr
    assert "TOPSECRET" not in r.stdout + r.stderr
    crafted.summary.unlink()
    os.mkfifo(crafted.summary)
    with pytest.raises(OSError, match="not a regular file"):
        own_file(crafted, crafted.summary)
    r = cli("status", crafted.path)
    assert r.returncode == 2 and "is not a regular file" in r.stderr


def test_no_new_run_or_sweep_goes_into_a_run_s_records(cli, crafted):
    before = sorted(crafted.path.rglob("*"))
    for root in (crafted.path, crafted.path / "checkpoints", crafted.path / "slurm" / "deeper"):
        r = cli("train", f"run.root={root}", "trainer.max_epochs=1")
        assert r.returncode == 2 and f"inside the records of {crafted.path}" in r.stderr
    r = cli("sweep", "sweeps/degradation_digits.yaml", "--dry-run", f"run.root={crafted.path}")
    assert r.returncode == 2 and "inside the records of" in r.stderr
    assert sorted(crafted.path.rglob("*")) == before


@pytest.mark.parametrize("record", ["sweep.csv", "sweep.yaml", "best_config.yaml", "tune/"])
def test_no_new_run_or_sweep_goes_into_a_sweep_s_records(cli, tmp_path, record):
    """`train run.root=<a sweep>` made <sweep>/quickstart/<id>, which `compare <sweep>` then
    showed among the sweep's trials; a sweep inside a sweep ran too."""
    sweep = tmp_path / "s4"
    (sweep / record).parent.mkdir(parents=True, exist_ok=True)
    (sweep / record).mkdir() if record.endswith("/") else (sweep / record).write_text("x\n")
    before = sorted(sweep.rglob("*"))
    for root in (sweep, sweep / "deeper"):
        r = cli("train", f"run.root={root}", "trainer.max_epochs=1")
        assert r.returncode == 2 and f"inside the records of {sweep}" in r.stderr, r.stderr
        r = cli("sweep", "sweeps/degradation_digits.yaml", "--dry-run", f"run.root={root}")
        assert r.returncode == 2 and f"inside the records of {sweep}" in r.stderr, r.stderr
    assert sorted(sweep.rglob("*")) == before
