"""summary.json keeps every test: the end of training's (top-level test/* and an entry in `tests`)
and each `reslab test` as its own entry (checkpoint, step, overrides, metrics), which never
overwrites the end of training's. A test measures the checkpoint as trained: overrides of the
model or the data are refused, and so are a damaged summary.json and a checkpoint that does
not fit, each in one sentence with nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from reslab.config.load import load
from reslab.run import train
from support import TINY

COMMON = [*TINY, "logger.wandb.mode=disabled", "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def tested(tmp_path_factory) -> Path:
    """A 1-epoch run, tested at the end of training; each test works on its own copy."""
    root = tmp_path_factory.mktemp("tested")
    return root / "default" / train.fit(load([], [*COMMON, "trainer.max_epochs=1",
                                                  f"run.root={root}"]))["run_id"]


@pytest.fixture
def run(tested, tmp_path) -> Path:
    return Path(shutil.copytree(tested, tmp_path / "run"))


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def digests(run: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def test_each_test_is_its_own_entry_and_the_end_of_training_s_stays(cli, run):
    first = summary(run)
    [end] = first["tests"]
    assert (end["by"], end["checkpoint"], end["global_step"], end["overrides"]) == (
        "train", "best.ckpt", 5, [])
    assert end["metrics"]["test/err"] == first["test/err"]

    r = cli("test", run / "checkpoints/last.ckpt", "data.batch_size=64")
    assert r.returncode == 0, r.stderr
    assert f"checkpoint {run / 'checkpoints/last.ckpt'} (step 5)" in r.stdout
    after = summary(run)
    assert after["test/err"] == first["test/err"] and after["tests"][0] == end
    manual = after["tests"][1]
    assert (manual["by"], manual["checkpoint"], manual["overrides"]) == (
        "reslab test", "last.ckpt", ["data.batch_size=64"])
    assert manual["metrics"]["test/err"] == pytest.approx(
        float(r.stdout.split("test/err ")[1].split()[0]), abs=1e-4)
    assert "test_checkpoint" not in after and "test_overrides" not in after


def test_a_resume_tests_again_at_its_end_and_keeps_the_earlier_entries(cli, run):
    """summary.json said test_checkpoint: last.ckpt after a later --resume tested best.ckpt."""
    assert cli("test", run / "checkpoints/last.ckpt").returncode == 0
    r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 0, r.stderr
    s = summary(run)
    assert [(t["by"], t["checkpoint"]) for t in s["tests"]] == [
        ("train", "best.ckpt"), ("reslab test", "last.ckpt"), ("train", "best.ckpt")]
    assert s["test/err"] == s["tests"][-1]["metrics"]["test/err"]
    assert s["tests"][-1]["global_step"] in (5, 10)  # best.ckpt: whichever epoch was best


@pytest.mark.parametrize("override", ["model.depth=14", "model.shortcut=none", "data.name=synthetic",
                                      "data.classes=[0,1]", "data.val_size=0.3", "seed=3",
                                      "optim.lr=0.5", "trainer.max_epochs=9", "run.name=x"])
def test_a_test_that_would_measure_another_model_or_data_is_refused(cli, run, override):
    before = digests(run)
    r = cli("test", run, override)
    key = override.split("=")[0]
    assert r.returncode == 2 and f"reslab test cannot change {key} (" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "data.root" in r.stderr
    assert digests(run) == before


@pytest.mark.parametrize("damage", [b"[1, 2]", b"not json", b'"text"', b"\xff\xfe"])
def test_a_damaged_summary_is_one_sentence_and_stays_as_it_is(cli, run, damage):
    (run / "summary.json").write_bytes(damage)
    before = digests(run)
    for args in (["test", run], ["train", "--resume", run, "trainer.max_epochs=2"]):
        r = cli(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "summary.json" in r.stderr and "move it aside" in r.stderr, r.stderr
    assert digests(run) == before


def test_a_checkpoint_of_another_network_is_refused(cli, run):
    state = torch.load(run / "checkpoints/best.ckpt", weights_only=True)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if "layer3" not in k}
    torch.save(state, run / "checkpoints/foreign.ckpt")
    before = digests(run)
    r = cli("test", run / "checkpoints/foreign.ckpt")
    assert r.returncode == 2 and "does not fit the run's model" in r.stderr, r.stderr
    assert digests(run) == before


def test_a_run_without_checkpoints_is_one_sentence_and_gains_no_file(cli, run):
    for p in [*run.glob("checkpoints/*"), run / ".lock"]:
        p.unlink()
    before = sorted(run.rglob("*"))
    for args in (["test", run], ["export", run]):
        r = cli(*args)
        assert r.returncode == 2 and "holds no checkpoint" in r.stderr, r.stderr
    assert sorted(run.rglob("*")) == before  # not even the lock file
