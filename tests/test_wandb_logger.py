"""W&B as reslab writes it, read back from the real offline run files: identity (name, group,
tags, job_type), summary = summary.json after train and after test, define_metric, checkpoint
artifacts and a fine-tune's lineage, and W&B's own variables against the recipe."""

from __future__ import annotations

import json

import pytest

from reslab.config.load import load
from reslab.run import evaluation, train
from reslab.tracking.rundir import RunDir
from reslab.tracking.wandb_identity import columns, identity
from support import TINY
from wandb_files import offline_runs, replay


@pytest.fixture
def series(wandb_series):
    return wandb_series[1]


def wandb_of(run: RunDir) -> dict:
    return replay(offline_runs(run.path))


def same_as_summary_json(run: RunDir) -> None:
    """Every key of summary.json in the W&B summary with the same value; val/err is W&B's
    {min, last}: last is summary.json's value, min its val/err_best."""
    summary = json.loads(run.summary.read_text())
    wb = wandb_of(run)["summary"]
    for key, value in summary.items():
        if key == "val/err":
            assert wb[key] == {"min": summary["val/err_best"], "last": value}
        else:
            assert wb[key] == value, key


def test_a_series_has_distinct_names_one_group_and_tags(series):
    infos = [wandb_of(r) for r in series]
    assert [i["name"] for i in infos] == ["resnet8-A-seed0", "plain8-seed0", "resnet14-A-seed0"]
    assert {i["group"] for i in infos} == {"cmp"} and {i["job_type"] for i in infos} == {"train"}
    assert {"depth8", "shortcut-A", "cifar", "digits", "classification"} <= set(infos[0]["tags"])
    assert "plain" in infos[1]["tags"] and "depth14" in infos[2]["tags"]
    assert [i["id"] for i in infos] == [r.run_id for r in series]
    config = infos[0]["config"]
    assert config["model.depth"] == 8 and "data.patch_size" not in config
    assert not any(k.startswith("slurm.") for k in config)


def test_summary_is_summary_json_and_val_err_keeps_its_minimum(series):
    for run in series:
        same_as_summary_json(run)
    metrics = {m.name: m for m in wandb_of(series[0])["metrics"] if m.name}
    assert metrics["val/err"].summary.min and metrics["val/err"].summary.last
    assert metrics["val/err"].step_metric == "trainer/global_step"
    assert any(m.glob_name == "*" and m.step_metric == "trainer/global_step"
               for m in wandb_of(series[0])["metrics"])


def test_reslab_test_writes_into_the_same_wandb_run(series):
    run = series[2]  # trained with run.test=false
    assert "test/err" not in json.loads(run.summary.read_text())
    evaluation.test(run)
    files = offline_runs(run.path)
    assert len(files) == 2 and {f.name for f in files} == {f"run-{run.run_id}.wandb"}
    same_as_summary_json(run)
    tests = wandb_of(run)["summary"]["tests"]  # a manual test is its own entry (summary.json too)
    assert len(tests) == 1 and "test/err" in tests[0]["metrics"]


def test_best_checkpoint_is_an_artifact_and_a_fine_tune_uses_it(series, tmp_path):
    source = series[0]
    art, = wandb_of(source)["artifacts"]
    assert art.name == f"model-{source.run_id}" and art.type == "model"
    assert set(art.aliases) == {"best", "latest"} and not art.use_after_commit
    meta = json.loads(art.metadata)
    assert meta["metric"] == "val/err" and meta["score"] == json.loads(
        source.summary.read_text())["val/err_best"] and meta["config"]["model.depth"] == 8
    entry, = art.manifest.contents
    assert entry.path == "model.ckpt"
    snap = entry.local_path
    assert snap.startswith(str(source.path / "wandb")) and \
        open(snap, "rb").read() == source.best_ckpt.read_bytes()

    cfg = load([], [*TINY, "trainer.max_epochs=1", "run.test=false", f"run.root={tmp_path}",
                    "run.name=ft", f"model.weights={source.path}", "logger.wandb.log_model=false"])
    summary = train.fit(cfg)
    info = wandb_of(RunDir(tmp_path / "ft" / summary["run_id"]))
    assert info["job_type"] == "fine-tune" and info["name"] == "resnet8-A-ft-seed0"
    used, = info["artifacts"]  # log_model=false: the input is the only artifact
    assert used.use_after_commit and used.name == art.name and used.digest == art.digest


@pytest.mark.parametrize("env, overrides, project", [
    ({"WANDB_PROJECT": "x"}, [], "x"),
    ({"WANDB_PROJECT": "x"}, ["logger.wandb.project=recipe"], "recipe"),
    ({}, [], "reslab"),
])
def test_wandb_project_precedence(cli, tmp_path, monkeypatch, env, overrides, project):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r = cli("train", *TINY, "trainer.max_steps=1", "run.test=false", f"run.root={tmp_path}",
            "logger.wandb.log_model=false", *overrides)
    assert r.returncode == 0, r.stderr[-2000:]
    run, = (p.parent for p in tmp_path.glob("*/*/config.yaml"))
    assert wandb_of(RunDir(run))["project"] == project


def test_wandb_mode_disabled_in_the_environment_writes_no_wandb_files(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    r = cli("train", *TINY, "trainer.max_steps=1", "run.test=false", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    run, = (p.parent for p in tmp_path.glob("*/*/config.yaml"))
    assert (run / "summary.json").is_file() and not (run / "wandb").exists()


def test_recipe_mode_beats_the_environment(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    r = cli("train", *TINY, "trainer.max_steps=1", "run.test=false", f"run.root={tmp_path}",
            "logger.wandb.mode=offline", "logger.wandb.log_model=false")
    assert r.returncode == 0, r.stderr[-2000:]
    run, = (p.parent for p in tmp_path.glob("*/*/config.yaml"))
    assert offline_runs(run)


def test_array_tasks_share_a_group_and_have_distinct_names(tmp_path):
    names, groups = set(), set()
    for task, seed in enumerate([0, 1, 2]):
        run = RunDir(tmp_path / "arr" / f"r{task}")
        run.record_job(f"4242_{task}", str(tmp_path / "log"))
        info = identity(load([], [f"seed={seed}", "run.name=arr"]), run)
        names.add(info["name"])
        groups.add(info["group"])
        assert info["job_type"] == "array-task"
    assert groups == {"arr-array4242"} and len(names) == 3


def test_config_columns_hold_only_keys_that_apply(tmp_path):
    run = RunDir(tmp_path / "r")
    cls = columns(load([], ["model.name=resnet20"]), run)
    assert "data.patch_size" not in cls and "model.global_residual" not in cls
    assert not any(k.startswith("slurm.") for k in cls)
    sr = columns(load([], ["model.name=vdsr", "data.name=photos"]), run)
    assert "data.patch_size" in sr and "model.shortcut" not in sr
    run.record_job("77", str(tmp_path / "log"))
    assert "slurm.partition" in columns(load([], []), run)


def test_logger_keys_are_checked():
    from reslab.errors import ConfigError

    with pytest.raises(ConfigError, match="log_model must be one of false, best, last, all"):
        load([], ["logger.wandb.log_model=sometimes"])
