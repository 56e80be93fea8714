"""`reslab train/test/models/config/status` through `cli.main`, in this process, on the embedded
data: the run-directory contract, exact resume, super-resolution, listings and refusals."""

from __future__ import annotations

import csv
import importlib
import json
import os
import signal
import warnings
from types import SimpleNamespace

import pytest
import torch

from reslab import cli as reslab_cli
from support import TINY
from support import run_dir as _run_dir


def test_train_writes_the_run_directory_contract_and_test_reevaluates(cli, tmp_path):
    r = cli("train", *TINY, "trainer.max_epochs=2", f"run.root={tmp_path}", "run.name=smoke")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    assert f"run directory: {run}" in r.stdout
    for f in ("config.yaml", "summary.json", "metrics.csv", "checkpoints/last.ckpt",
              "checkpoints/best.ckpt"):
        assert (run / f).is_file(), f
    assert list((run / "wandb").glob("offline-run-*")), "W&B offline files in the run dir"
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["run_id"] == run.name
    for k in ("global_step", "epoch", "train/loss", "train/err", "val/err", "val/err_best",
              "test/err", "params", "wall_s", "images_per_s"):
        assert k in s, k
    assert s["epoch"] == 2 and s["global_step"] == 2 * 5 and s["val/err_best"] <= s["val/err"]
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 10

    t = cli("test", run)
    assert t.returncode == 0, t.stderr
    assert json.loads((run / "summary.json").read_text())["test/err"] == pytest.approx(
        float(t.stdout.split("test/err ")[1].split()[0]), abs=1e-4)


def test_resume_is_exact(cli, tmp_path):
    """A run stopped after epoch 2 and resumed ends with the same weights, bit for bit, as one
    that ran straight through (RNG, optimizer, schedule and data order are in the checkpoint)."""
    common = [*TINY, "optim.schedule=constant", "optim.warmup_steps=7",
              "logger.wandb.mode=disabled", "run.test=false"]
    straight = cli("train", *common, "trainer.max_epochs=4", f"run.root={tmp_path}/a")
    assert straight.returncode == 0, straight.stderr
    first = cli("train", *common, "trainer.max_epochs=2", f"run.root={tmp_path}/b")
    assert first.returncode == 0, first.stderr
    b = _run_dir(tmp_path / "b")
    resumed = cli("train", "--resume", b, "trainer.max_epochs=4")
    assert resumed.returncode == 0, resumed.stderr

    a_state = torch.load(_run_dir(tmp_path / "a") / "checkpoints/last.ckpt", weights_only=True)
    b_state = torch.load(b / "checkpoints/last.ckpt", weights_only=True)
    assert b_state["global_step"] == a_state["global_step"] == 20
    for k, v in a_state["state_dict"].items():
        assert torch.equal(v, b_state["state_dict"][k]), k
    with open(b / "metrics.csv") as f:
        rows = [(r["step"], tuple(k for k, v in r.items() if v and k not in ("step", "epoch")))
                for r in csv.DictReader(f)]
    assert len(rows) == len(set(rows)), "no step is logged twice after a resume"


SR_TINY = ["configs/experiment/sr_vdsr_sample.yaml", "model.depth=3", "model.width=0.25",
           "data.patch_size=16", "data.size=32", "data.batch_size=8", "trainer.max_epochs=2"]


def test_super_resolution_trains_through_the_same_path_and_reports_psnr(cli, tmp_path):
    r = cli("train", *SR_TINY, f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["global_step"] == 2 * 4
    for split in ("val", "test"):
        assert s[f"{split}/psnr_gain"] == pytest.approx(s[f"{split}/psnr"] - s[f"{split}/psnr_bicubic"])
        assert 20 < s[f"{split}/psnr_bicubic"] < 40 and 0 < s[f"{split}/ssim"] <= 1
    assert s["val/psnr_best"] >= s["val/psnr"]
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/psnr")]
    assert len(rows) == 2  # one validation per epoch
    best = torch.load(run / "checkpoints/best.ckpt", weights_only=True)
    assert best["state_dict"]["val_psnr_best"] == pytest.approx(s["val/psnr_best"], abs=1e-4)
    assert "val/psnr" in r.stdout and "val/psnr_bicubic" in r.stdout

    t = cli("test", run / "checkpoints/last.ckpt")  # a checkpoint named: that one is evaluated
    assert t.returncode == 0, t.stderr
    assert f"checkpoint {run / 'checkpoints/last.ckpt'} (step 8)" in t.stdout
    after = json.loads((run / "summary.json").read_text())
    test = after["tests"][-1]
    assert (test["by"], test["checkpoint"], test["global_step"]) == ("reslab test", "last.ckpt", 8)
    assert float(t.stdout.split("test/psnr ")[1].split()[0]) == pytest.approx(
        test["metrics"]["test/psnr"], abs=1e-4)
    assert after["test/psnr"] == s["test/psnr"]  # the end of training's stays
    for other in ("data.channels=rgb", "data.scale=4", "model.depth=5"):  # another model, data
        r = cli("test", run, other)
        assert r.returncode == 2 and f"reslab test cannot change {other.split('=')[0]}" in r.stderr


def test_models_lists_the_reference_counts(cli):
    r = cli("models", "resnet*")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert "269,722" in lines["resnet20"] and "19,421,274" in lines["resnet1202"]
    assert "25,557,032" in lines["resnet50"] and "4.09G" in lines["resnet50"]


def _refused(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one sentence, no traceback
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("args,words", [
    (["model.dpeth=56"], ["unknown config key 'model.dpeth'", "did you mean 'model.depth'"]),
    (["model.depth=57"], ["6n+2", "got 57", "did you mean 56"]),
    (["model.shortcut=D"], ["model.shortcut", "'D'"]),
    (["data.name=cifar10", "data.root=/nonexistent/cifar"], ["/nonexistent/cifar", "data.download"]),
    (["configs/nope.yaml"], ["configs/nope.yaml", "does not exist"]),
    (["configs/experiment/sr_vdsr_sample.yaml", "data.name=digits"],
     ["model.name=vdsr is a super-resolution model", "use data.name=photos or sr_folder"]),
    (["configs/experiment/sr_vdsr_sample.yaml", "data.patch_size=400"],
     ["data.patch_size=400 is larger than a training image"]),
])
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(cli, tmp_path, args, words):
    r = cli("train", *args, f"run.root={tmp_path}/runs")
    _refused(r, *words)
    assert not (tmp_path / "runs").exists()


def test_an_unknown_option_points_to_its_subcommand_s_help(cli, tmp_path):
    """`reslab test RUN --checkpoint X` said "see `reslab --help`", which lists no options."""
    _refused(cli("test", str(tmp_path), "--checkpoint", "x"),
             "reslab test: error: unrecognized arguments: --checkpoint x",
             "(see `reslab test --help`)")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupted_checkpoint_is_refused_naming_the_file(cli, tmp_path, damage):
    r = cli("train", *TINY, "trainer.max_epochs=1", "logger.wandb.mode=disabled",
               "run.test=false", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    for name in ("best.ckpt", "last.ckpt"):
        p = run / "checkpoints" / name
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 64)
    before = (run / "summary.json").read_text()
    _refused(cli("test", run), "best.ckpt", "cannot load checkpoint")
    _refused(cli("train", "--resume", run), "best.ckpt", "cannot load checkpoint", "move it aside")
    assert (run / "summary.json").read_text() == before


def test_last_ckpt_is_the_final_state_when_the_last_epoch_is_not_the_best(cli, tmp_path,
                                                                          monkeypatch):
    from reslab.tasks.classification import ClassificationTask

    real = ClassificationTask._eval_epoch_end

    def rising(self, split):  # val/err = the epoch index: epoch 1 is the best, never again
        if split != "val":
            return real(self, split)
        for m in self.metrics.values():
            m.reset()
        err = torch.tensor(float(self.current_epoch))
        self.log("val/err", err, prog_bar=True, sync_dist=True)
        return err

    monkeypatch.setattr(ClassificationTask, "_eval_epoch_end", rising)
    r = cli("train", *TINY, "trainer.max_epochs=4", "logger.wandb.mode=disabled",
            "run.test=false", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    assert torch.load(run / "checkpoints/best.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 20
    more = cli("train", "--resume", run, "trainer.max_epochs=5")
    assert more.returncode == 0 and "resuming at step 20" in more.stdout, more.stderr
    with open(run / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert max(steps) == 25 and set(range(21, 26)) <= set(steps)  # epoch 5: steps 21-25


def test_max_steps_mid_epoch_saves_the_state_it_stopped_at(cli, tmp_path):
    r = cli("train", *TINY, "trainer.max_steps=7", "logger.wandb.mode=disabled",
            "run.test=false", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    run = _run_dir(tmp_path)
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 7


def test_deterministic_turns_cudnn_benchmark_off(cli, tmp_path):
    """trainer.deterministic=true with the default cudnn_benchmark=true printed Lightning's
    warning that PyTorch ignores determinism under benchmark: deterministic wins."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = cli("train", *TINY, "trainer.max_epochs=1", "trainer.deterministic=true",
                "logger.wandb.mode=disabled", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert not [w for w in caught if "benchmark" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_command_s_import_waits_for_the_import(cli, monkeypatch, signum, code,
                                                                   said):
    """Ctrl-C or SIGTERM inside numpy's import (the first half second of `reslab train`) left
    numpy half-initialised: a RecursionError traceback and exit 1. The import now ends first, and
    then the signal ends the command: 130 / 143, one line."""
    imported = []

    def import_module(name):
        os.kill(os.getpid(), signum)  # lands mid-import
        imported.append(name)
        return importlib.import_module(name)

    monkeypatch.setattr(reslab_cli, "importlib", SimpleNamespace(import_module=import_module))
    r = cli("config", "configs/quickstart.yaml")
    assert (r.returncode, imported) == (code, ["reslab.commands.config"]), r.stderr
    assert r.stderr == f"reslab config: {said}\n"
