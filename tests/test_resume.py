"""`--resume` continues the same experiment: a change it cannot honour (fewer epochs than trained,
another optimizer, other frozen layers, other data, another place) is refused before anything
is written, a completed run with nothing left to train is said to be complete, and the changes
it allows (more epochs, another learning rate) are honoured."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from reslab.config.load import flatten, load, to_dict
from reslab.errors import UserError
from reslab.run import train
from reslab.run.resuming import RESUMABLE, MovedRun
from reslab.tracking.records import covered
from reslab.tracking.rundir import RunDir
from support import TINY

COMMON = [*TINY, "logger.wandb.mode=disabled", "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> Path:
    """A completed, tested 2-epoch run (5 steps an epoch); each test works on its own copy."""
    root = tmp_path_factory.mktemp("completed")
    cfg = load([], [*COMMON, "trainer.max_epochs=2", "optim.schedule=constant", f"run.root={root}"])
    return root / "default" / train.fit(cfg)["run_id"]


@pytest.fixture
def run(completed, tmp_path) -> Path:
    return Path(shutil.copytree(completed, tmp_path / "run"))


def digests(run: Path) -> dict:
    """Every file in the run directory, its lock file too."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("override,words", [
    ("trainer.max_epochs=1", "cannot end at trainer.max_epochs=1: "),
    ("trainer.max_steps=4", "cannot end at trainer.max_steps=4: "),
    ("optim.name=adamw", "cannot change optim.name (sgd -> adamw)"),
    ("optim.momentum=0.5", "cannot change optim.momentum (0.9 -> 0.5)"),
    ("optim.schedule=cosine", "cannot change optim.schedule (constant -> cosine)"),
    ("model.freeze=stem", "cannot change model.freeze (none -> stem)"),
    ("model.depth=14", "cannot change model.depth (8 -> 14)"),
    ("model.weights=IMAGENET1K_V1", "cannot change model.weights"),
    ("data.name=synthetic", "cannot change data.name (digits -> synthetic)"),
    ("data.val_size=0.2", "cannot change data.val_size"),
    ("data.split_seed=3", "cannot change data.split_seed"),
    ("data.classes=[0,1]", "cannot change data.classes"),
    ("data.batch_size=64", "cannot change data.batch_size"),
    ("run.name=elsewhere", "cannot change run.name (default -> elsewhere)"),
    ("seed=5", "cannot change seed (0 -> 5)"),
])
def test_a_resume_it_cannot_honour_is_refused_and_writes_nothing(cli, run, override, words):
    before = digests(run)
    r = cli("train", "--resume", run, override)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "start a new run with model.weights=" in r.stderr
    assert digests(run) == before
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_another_run_root_is_refused(cli, run, tmp_path):
    r = cli("train", "--resume", run, f"run.root={tmp_path}/other")
    assert r.returncode == 2 and "cannot change run.root" in r.stderr, r.stderr
    assert not (tmp_path / "other").exists()


def test_resuming_a_completed_run_with_nothing_left_writes_nothing_and_says_so(cli, run):
    """It re-tested the run and added an attempt (issue 25, 7)."""
    before = digests(run)
    for extra in ([], ["trainer.max_epochs=2", "logger.wandb.mode=offline"]):
        r = cli("train", "--resume", run, *extra)
        assert r.returncode == 0, r.stderr
        assert f"{run} is complete (2 epochs, step 10): nothing to train" in r.stdout, r.stdout
        # the lock file names the last process that held the run (it read the checkpoint)
        assert digests(run).keys() == before.keys()
        assert {k: v for k, v in digests(run).items() if k != ".lock"} == \
            {k: v for k, v in before.items() if k != ".lock"}


def test_more_epochs_and_another_learning_rate_are_honoured(cli, run):
    """Lightning restores the learning rates from the checkpoint: optim.lr=0.02 was recorded in
    config.yaml and silently trained at 0.1."""
    r = cli("train", "--resume", run, "trainer.max_epochs=3", "optim.lr=0.02")
    assert r.returncode == 0 and "resuming at step 10" in r.stdout, r.stderr
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert state["global_step"] == 15
    assert {g["lr"] for g in state["optimizer_states"][0]["param_groups"]} == {0.02}
    assert set(state["lr_schedulers"][0]["base_lrs"]) == {0.02}


def test_an_epoch_cut_short_by_max_steps_counts_as_begun(cli, tmp_path):
    """Lightning counts the cut epoch as processed: max_epochs=1 trained nothing more and said
    completed."""
    r = cli("train", *COMMON, "run.test=false", "trainer.max_steps=7", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = next(tmp_path.rglob("config.yaml")).parent
    before = digests(run)
    r = cli("train", "--resume", run, "trainer.max_steps=-1", "trainer.max_epochs=1")
    assert r.returncode == 2 and "has begun 2 epochs (step 7); give at least 2" in r.stderr, \
        r.stderr
    assert digests(run) == before
    r = cli("train", "--resume", run, "trainer.max_steps=-1", "trainer.max_epochs=3")
    assert r.returncode == 0 and "resuming at step 7" in r.stdout, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epoch"] == 3 and summary["global_step"] > 7


def test_every_key_a_resume_may_change_exists_and_the_rest_are_refused():
    keys = set(flatten(to_dict(load([], []))))
    for k in RESUMABLE:
        assert k in keys or any(key.startswith(k) for key in keys), f"{k} is not a config key"
    assert covered("logger.wandb.tags", RESUMABLE) and covered("slurm.partition", RESUMABLE)
    assert not covered("model.freeze", RESUMABLE) and not covered("data.root", RESUMABLE)
    assert not covered("trainer.max_epochs_new", RESUMABLE)
    assert not covered("optim.lr_new", RESUMABLE)


def test_fit_itself_refuses_a_shorter_run(run):
    """The rule lives in train.fit (a SLURM job and a sweep trial resume through it too)."""
    before = digests(run)
    cfg = load([run / "config.yaml"], ["trainer.max_epochs=1"])
    with pytest.raises(UserError, match="cannot end at trainer.max_epochs=1"):
        train.fit(cfg, resume=RunDir(run))
    assert digests(run) == before


def test_a_moved_run_keeps_its_best_score(run):
    """Lightning drops ModelCheckpoint's state when the run's folder changed (a copied or moved
    run directory): the next validation, worse or not, replaced best.ckpt."""
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    key = next(k for k in saved["callbacks"] if k.startswith("ModelCheckpoint"))
    score = saved["callbacks"][key]["best_model_score"]
    assert saved["callbacks"][key]["dirpath"] != str(run / "checkpoints")  # a copy
    MovedRun(run / "checkpoints").on_load_checkpoint(None, None, saved)
    best = ModelCheckpoint(dirpath=run / "checkpoints", filename="best", monitor="val/err")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The dirpath has changed ... won't be reloaded"
        best.load_state_dict(saved["callbacks"][key])
    assert best.best_model_score == score and score is not None
    assert best.best_model_path == str(run / "checkpoints" / "best.ckpt")


def test_a_trial_of_a_sweep_is_not_resumed_alone(cli, run, tmp_path):
    """`train --resume` of a finished sweep trial with more epochs retrained it inside the sweep:
    sweep.yaml and sweep.csv still described one epoch, and compare mixed the two."""
    trial = Path(shutil.copytree(run, tmp_path / "sweep" / "shortcut=A,seed=0"))
    (tmp_path / "sweep" / "sweep.yaml").write_text("name: sweep\n")
    before = digests(trial)
    r = cli("train", "--resume", trial, "trainer.max_epochs=3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{trial} is a trial of the sweep {tmp_path / 'sweep'}: `reslab sweep SPEC --resume`" \
        in r.stderr
    assert digests(trial) == before


@pytest.mark.parametrize("what,said", [
    ("nope", "does not exist"), ("fifo", "is not a run directory (a FIFO, device or socket)"),
    ("run/config.yaml", "is a file, not a run directory"), ("loop", "does not exist (a link"),
    ("empty", "is not a run directory (no config.yaml in it)")])
def test_what_is_not_a_run_is_said_as_what_it_is(cli, run, tmp_path, what, said):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "empty").mkdir()
    for command in (["train", "--resume"], ["test"]):
        r = cli(*command, tmp_path / what)
        assert r.returncode == 2 and f"{tmp_path / what} {said}" in r.stderr, r.stderr


@pytest.mark.parametrize("line,edited", [("seed: 0", "seed: 7"), ("  momentum: 0.9", "  momentum: 0.5")])
def test_a_config_yaml_edited_by_hand_is_refused_against_the_checkpoint(cli, run, line, edited):
    """An edit of config.yaml changed the experiment behind the resume's check of overrides: it
    trained on with it and recorded the attempt with `overrides: []`."""
    config = run / "config.yaml"
    assert line in config.read_text().splitlines()
    config.write_text(config.read_text().replace(line + "\n", edited + "\n", 1))
    before = digests(run)
    r = cli("train", "--resume", run, "trainer.max_epochs=3")
    key = line.split(":")[0].strip()
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"says {'optim.' if key == 'momentum' else ''}{key}=" in r.stderr
    assert "last.ckpt was trained with" in r.stderr and "model.weights=" in r.stderr
    assert digests(run) == before
