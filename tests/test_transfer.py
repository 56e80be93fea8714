"""The transfer demo (configs/experiment/pretrain_digits_0to4.yaml, then transfer_digits.yaml) as
the docs give it, from an empty folder: the same commands twice give the same weights, bit for
bit, and the fine-tune says which pretraining it started from."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from support import ROOT

SMALL = ["model.depth=8", "data.batch_size=256", "trainer.max_epochs=1",
         "logger.wandb.mode=disabled", "trainer.progress_bar=false"]
PRETRAIN = ROOT / "configs/experiment/pretrain_digits_0to4.yaml"
TRANSFER = ROOT / "configs/experiment/transfer_digits.yaml"


def demo(cli, folder: Path, *transfer_args: str) -> tuple[dict, dict, str]:
    """Pretrain and fine-tune in `folder` (the recipes' relative runs/ paths land there): the
    fine-tune's summary, its last weights and what it printed."""
    folder.mkdir()
    pre = cli("train", PRETRAIN, *SMALL, cwd=folder)
    assert pre.returncode == 0, pre.stderr
    tuned = cli("train", TRANSFER, *SMALL, *transfer_args, cwd=folder)
    assert tuned.returncode == 0, tuned.stderr
    [run] = (folder / "runs/transfer_digits").iterdir()
    weights = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    return json.loads((run / "summary.json").read_text()), weights, tuned.stdout


def test_the_transfer_demo_is_deterministic(cli, tmp_path):
    """Everything random is seeded (the split by data.split_seed, the run by seed, loader workers
    by both): two runs from scratch give the same fine-tuned weights and val/err."""
    (s1, w1, out1), (s2, w2, _) = (demo(cli, tmp_path / name) for name in ("one", "two"))
    assert s1["val/err"] == s2["val/err"] and s1["global_step"] == s2["global_step"] > 0
    assert w1.keys() == w2.keys() and all(torch.equal(v, w2[k]) for k, v in w1.items())
    [pretrained] = (tmp_path / "one/runs/digits_0to4").iterdir()
    assert f"model.weights=runs/digits_0to4: {pretrained.relative_to(tmp_path / 'one')}" in out1


def test_the_linear_probe_trains_only_the_classifier(cli, tmp_path):
    """model.freeze=backbone: every tensor of the network but the classifier is the
    pretraining's at the end, BatchNorm's statistics included."""
    summary, weights, _ = demo(cli, tmp_path / "probe", "model.freeze=backbone")
    [pre] = (tmp_path / "probe/runs/digits_0to4").iterdir()
    start = torch.load(pre / "checkpoints/best.ckpt", weights_only=True)["state_dict"]
    changed = {k for k, v in weights.items() if k.startswith("net.") and not torch.equal(v, start[k])}
    # BatchNorm's running statistics too stay the pretraining's (they were trained in a probe)
    assert changed == {"net.fc.weight", "net.fc.bias"} and summary["status"] == "completed"
