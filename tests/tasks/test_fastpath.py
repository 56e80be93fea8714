"""The task's per-step bookkeeping (sums on the device, logged on the loggers' steps only) and
the fast path's switches (channels_last, compile: true | false | auto) as a run records them."""

from __future__ import annotations

import csv
import json
import resource
import sys

import pytest
import torch
from torch import nn

from reslab.config import load as C
from reslab.run import train, trainer
from reslab.run.build import build_net_and_data
from reslab.tasks import ClassificationTask, fastpath
from reslab.tasks.base import EpochSteps
from support import TINY, run_dir


def _rows(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_epoch_means_are_the_image_weighted_mean_of_the_step_losses(tmp_path):
    cfg = C.load([], [*TINY, "trainer.max_epochs=2", "run.test=false", f"run.root={tmp_path}",
                      "logger.wandb.mode=disabled", "trainer.progress_bar=false"])
    train.fit(cfg)
    run = run_dir(tmp_path)
    dm = build_net_and_data(cfg).datamodule
    loader = dm.train_dataloader()
    n, bs = loader.per_rank, loader.batch_size
    sizes = [min(bs, n - i * bs) for i in range(len(loader))]
    rows = _rows(run)
    for epoch in (1, 2):  # metrics.csv's epochs are 1-based
        steps = [float(r["train/loss_step"]) for r in rows
                 if r["epoch"] == str(epoch) and r["train/loss_step"]]
        assert len(steps) == len(sizes)  # log_every_n_steps=1: every step
        mean = sum(s * k for s, k in zip(steps, sizes)) / sum(sizes)
        [logged] = [float(r["train/loss"]) for r in rows
                    if r["epoch"] == str(epoch) and r["train/loss"]]
        assert logged == pytest.approx(mean, rel=1e-5)
        [err] = [float(r["train/err"]) for r in rows if r["epoch"] == str(epoch) and r["train/err"]]
        assert 0 <= err <= 1 and err * sum(sizes) == pytest.approx(round(err * sum(sizes)), abs=1e-3)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["channels_last"] is True  # auto: a conv net
    assert summary["compile"] is False and summary["compile_setting"] == "auto"
    assert summary["compile_why"].startswith("auto: eager")


@pytest.mark.parametrize("fold", [3, 4096])  # folded into sums every 3 steps, or never
def test_an_epochs_steps_give_the_weighted_means_and_the_first_nan_step(monkeypatch, fold):
    monkeypatch.setattr(EpochSteps, "FOLD", fold)
    losses, sizes, wrongs = [2.0, 1.0, 4.0, 3.0, 0.5, 1.5, 2.5], [8, 8, 8, 8, 8, 8, 3], [3, 1, 4, 1, 5, 2, 0]
    steps = EpochSteps(first_step=100)
    for loss, n, w in zip(losses, sizes, wrongs):
        steps.add(torch.tensor(loss), n, torch.tensor(w))
    assert len(steps.losses) == len(losses) % fold and steps.last.item() == 2.5
    loss, err = steps.means()
    assert loss.item() == pytest.approx(sum(a * n for a, n in zip(losses, sizes)) / sum(sizes))
    assert err.item() == pytest.approx(sum(wrongs) / sum(sizes))
    assert steps.first_bad() is None
    for bad_at in (1, 4, 6):  # in a folded block and in the listed steps
        steps = EpochSteps(first_step=100)
        for i, loss in enumerate(losses):
            steps.add(torch.tensor(float("nan") if i == bad_at else loss), 8, None)
        steps.add(torch.tensor(float("inf")), 8, None)  # a later bad step does not count
        assert steps.first_bad() == 100 + bad_at and steps.means()[1] is None


def test_the_step_loss_is_logged_only_on_the_loggers_steps(tmp_path):
    cfg = C.load([], [*TINY, "trainer.log_every_n_steps=2", "trainer.max_steps=7",
                      "run.test=false", f"run.root={tmp_path}", "logger.wandb.mode=disabled",
                      "trainer.progress_bar=false", "trainer.channels_last=false",
                      "trainer.compile=false"])
    summary = train.fit(cfg)
    steps = [int(r["step"]) for r in _rows(run_dir(tmp_path)) if r["train/loss_step"]]
    assert steps == [2, 4, 6]  # a row's step is the steps done, as summary.json's global_step
    assert summary["channels_last"] is False and summary["compile_why"] == "trainer.compile=false"
    assert "train/loss" in summary  # max_steps mid-epoch: the epoch so far is logged


def test_compile_auto_compiles_only_when_the_steps_left_repay_it(monkeypatch):
    monkeypatch.setattr(fastpath, "can_compile", lambda device: (True, ""))
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(10))  # 2 layers
    cost = fastpath.compile_cost_s(net, "cpu")
    step_s = 0.5
    repays = int(cost / (step_s * fastpath.GAIN["cpu"])) + 1
    assert fastpath.decide(repays, step_s, net, "cpu")[0] is True
    use, why = fastpath.decide(repays // 2, step_s, net, "cpu")
    assert use is False and why.startswith("auto: eager") and "2 layers" in why
    monkeypatch.setattr(fastpath, "can_compile", lambda device: (False, "no C++ compiler"))
    assert fastpath.decide(10**9, step_s, net, "cpu") == (False, "auto: eager, no C++ compiler")


def test_switches_resolve_and_the_task_records_what_it_used():
    conv, mlp = nn.Sequential(nn.Conv2d(1, 4, 3)), nn.Sequential(nn.Linear(4, 2))
    assert fastpath.use_channels_last("auto", conv) and not fastpath.use_channels_last("auto", mlp)
    assert fastpath.use_channels_last(True, mlp) and not fastpath.use_channels_last(False, conv)
    assert [fastpath.parse(v) for v in (True, False, "AUTO")] == [True, False, "auto"]
    optim = C.load([], []).optim
    task = ClassificationTask(nn.Sequential(nn.Conv2d(1, 4, 3)), 10, optim, True, True)
    assert task.fast_path["compile"] is True and task._forward is not task.net  # compiled lazily
    assert task.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert task.state_dict().keys() == {"net.0.weight", "net.0.bias", "val_err_best"}
    eager = ClassificationTask(nn.Sequential(nn.Conv2d(1, 4, 3)), 10, optim, False, "auto")
    assert eager._forward is eager.net and eager.probe is not None


def test_training_flushes_denormal_floats_to_zero():
    """A ResNet-1202's tiny activations and gradients made its CPU steps 30-50x slower as
    denormals (48-85 s a step on digits, 1.7 s flushed); every run and the bench flush them."""
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-39]).item() != 0.0  # a float32 denormal, kept
    trainer.prepare_process()
    assert torch.tensor([1e-39]).item() == 0.0


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_freed_memory_is_kept_for_the_next_step_not_page_faulted_back():
    """glibc gave a freed step's activations back to the kernel and faulted them in again
    (~12,000 faults a step, ResNet-20 fp32 batch 128); a whole step's worth (8 x 8 MB) freed
    and allocated again now reuses the same pages."""
    if not fastpath.keep_freed_memory():
        pytest.skip("not glibc")

    def cycle() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step = [torch.empty(2 << 20).fill_(1.0) for _ in range(8)]
        del step
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    cycle(), cycle()  # the heap grows to the step's size once
    assert cycle() + cycle() < 1000  # without: ~16,000 a cycle (one per 4 KiB page)


def test_keep_freed_memory_changes_nothing_outside_glibc(monkeypatch):
    monkeypatch.setattr(fastpath.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(fastpath.ctypes, "CDLL", lambda *a: pytest.fail("libc touched"))
    assert fastpath.keep_freed_memory() is False
