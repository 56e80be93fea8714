"""A run directory says how the run was trained, over all its attempts: config.yaml is the config
the last attempt trained with (a `--resume` with KEY=VALUE overrides rewrites it), and
summary.json's `attempts` lists each attempt's start time, overrides and resume step."""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from reslab.tracking.redaction import redact_overrides
from support import TINY
from support import run_dir as _run_dir

COMMON = [*TINY, "logger.wandb.mode=disabled", "run.test=false"]


def test_resume_with_overrides_rewrites_the_config_and_records_each_attempt(cli, tmp_path):
    first = [*COMMON, "trainer.max_epochs=1", f"run.root={tmp_path}"]
    r = cli("train", *first)
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    r = cli("train", "--resume", run, "trainer.max_epochs=2", "optim.lr=0.05")
    assert r.returncode == 0 and "resuming at step 5" in r.stdout, r.stderr

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2 and config["optim"]["lr"] == 0.05
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epoch"] == 2
    attempts = summary["attempts"]
    assert [(a["overrides"], a["resumed_at_step"]) for a in attempts] == [
        (first, None), (["trainer.max_epochs=2", "optim.lr=0.05"], 5)]
    started = [datetime.fromisoformat(a["started"]) for a in attempts]
    assert started[0] <= started[1] and started[0].tzinfo is not None
    assert summary["resumed_at_steps"] == [5]


def test_a_refused_resume_changes_nothing_in_the_run_directory(cli, tmp_path):
    r = cli("train", *COMMON, "trainer.max_epochs=1", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "summary.json")}
    r = cli("train", "--resume", run, "model.depth=14", "trainer.max_epochs=2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr  # the checkpoint does not fit
    assert {f: (run / f).read_bytes() for f in before} == before


def test_resume_refuses_another_model_even_where_its_tensors_fit(cli, tmp_path):
    """Option A has no shortcut parameters, so plain-8's tensors are ResNet-8 (A)'s: resuming
    with model.shortcut=none loaded, trained on as a plain net and rewrote config.yaml."""
    r = cli("train", *COMMON, "model.shortcut=A", "trainer.max_epochs=1", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "summary.json")}
    r = cli("train", "--resume", run, "model.shortcut=none", "trainer.max_epochs=2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--resume cannot change model.shortcut (A -> none)" in r.stderr
    assert {f: (run / f).read_bytes() for f in before} == before


def test_secret_override_values_are_not_recorded(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k-123456")
    assert redact_overrides(["logger.wandb.api_key=abc", "optim.lr=0.1", "run.name=k-123456",
                             "odd"]) == ["logger.wandb.api_key=***", "optim.lr=0.1", "***", "odd"]
