"""Checkpoints as W&B model artifacts (`logger.wandb.log_model`), and a fine-tune's pretrained
run recorded as its input, so W&B's lineage graph shows pretrain -> fine-tune.

Each logged checkpoint is first hard-linked (copied across file systems) into the W&B run's own
folder (`<run dir>/wandb/<offline-run-...>/artifacts/`) and added by reference: offline, the
artifact sits in the run files and uploads on `wandb sync`, and a later attempt that rewrites
best.ckpt cannot change what an earlier attempt logged. The artifact is `model-<W&B run id>`,
one file `model.ckpt`: the same bytes give the same digest, which is how a fine-tune's
reference matches the pretraining run's version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reslab.compat import log_artifact_used_after_commit
from reslab.config.schema import Config
from reslab.errors import UserError
from reslab.tracking import checkpoint
from reslab.tracking.records import is_torchvision_name, weights_file
from reslab.tracking.rundir import RunDir, find_run
from reslab.tracking.wandb_identity import columns, log_model, run_id, task_metrics

ENTRY = "model.ckpt"


def artifact_name(wandb_run_id: str) -> str:
    return f"model-{wandb_run_id}"


def log_end_of_run(experiment, cfg: Config, run: RunDir, summary: dict) -> None:
    """best: best.ckpt (aliases best, latest); last and all: last.ckpt (aliases last, latest),
    with best.ckpt too for `last`; false: nothing."""
    how = log_model(cfg)
    metric = task_metrics(cfg).monitor[0]
    score = summary.get(f"{metric}_best")
    if how in ("best", "last") and run.best_ckpt.is_file():
        log_checkpoint(experiment, cfg, run, run.best_ckpt, ["best"], {"score": score})
    if how in ("last", "all") and run.last_ckpt.is_file():
        log_checkpoint(experiment, cfg, run, run.last_ckpt, ["last"],
                       {"score": summary.get(metric)})


def log_checkpoint(experiment, cfg: Config, run: RunDir, ckpt: str | Path, aliases: list[str],
                   meta: dict) -> None:
    """One version of the run's model artifact: the checkpoint, its aliases (+ latest) and
    metadata (the monitored metric and its score, step, epoch, file, the run's config)."""
    import wandb

    ckpt = Path(ckpt)
    state = checkpoint.load(ckpt, mmap=True)
    step, epoch = state.get("global_step"), state.get("epoch")
    snap = snapshot(experiment, ckpt, f"{ckpt.stem}-step{step}.ckpt")
    metric = task_metrics(cfg).monitor[0]
    art = wandb.Artifact(artifact_name(experiment.id), type="model", metadata={
        "metric": metric, **meta, "step": step, "epoch": epoch, "file": ckpt.name,
        "run_dir": str(run.path), "config": columns(cfg, run)})
    art.add_file(str(snap), name=ENTRY, policy="immutable")
    experiment.log_artifact(art, aliases=[*aliases, "latest"])


def snapshot(experiment, ckpt: Path, name: str) -> Path:
    """The checkpoint's bytes as they are now, in the W&B run's folder."""
    folder = Path(experiment.dir).parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    dest.unlink(missing_ok=True)
    try:
        os.link(ckpt, dest)
    except OSError:
        shutil.copy2(ckpt, dest)
    return dest


def use_pretrained(experiment, cfg: Config) -> None:
    """A fine-tune from a reslab run records that run's model artifact as its input: the same
    checkpoint bytes under the same artifact name, so W&B matches the pretraining version.
    torchvision weights and plain files outside a run directory have no artifact."""
    spec = str(cfg.model.weights)
    if spec == "none" or is_torchvision_name(spec):
        return
    ckpt = weights_file(spec)
    try:
        source = find_run(ckpt)
    except UserError:  # a plain file, not a reslab run's checkpoint
        return
    import wandb

    art = wandb.Artifact(artifact_name(run_id(source)), type="model")
    art.add_file(str(ckpt), name=ENTRY, policy="immutable")
    if experiment.offline:
        log_artifact_used_after_commit(experiment, art)  # use_artifact, offline
    else:
        experiment.use_artifact(art)
