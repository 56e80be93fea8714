"""A run's W&B run: the logger's life (start, metrics, the summary, the end), its checkpoints
as model artifacts with a fine-tune's lineage, and `reslab test`'s summary into the same W&B
run; what the run is called there and which settings win is wandb_identity's (plain data).
W&B never decides how a run ends: its failures are warnings (`guarded`). Private W&B and
Lightning APIs go through reslab.compat; `wandb` itself is imported only where a run needs it.

Artifacts (`logger.wandb.log_model`). Each logged checkpoint is first hard-linked (copied across
file systems) into the W&B run's own folder (`<run dir>/wandb/<offline-run-...>/artifacts/`)
and added by reference: offline, the artifact sits in the run files and uploads on
`wandb sync`, and a later attempt that rewrites best.ckpt cannot change what an earlier attempt
logged. The artifact is `model-<W&B run id>`, one file `model.ckpt`: the same bytes give the
same digest, which is how a fine-tune's reference matches the pretraining run's version, so
W&B's lineage graph shows pretrain -> fine-tune."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from reslab.compat import (
    log_artifact_used_after_commit,
    wandb_init_args,
    wandb_run_if_started,
    wandb_settings,
)
from reslab.config.schema import Config
from reslab.errors import UserError, Warned
from reslab.tracking import checkpoint
from reslab.tracking.records import is_torchvision_name, weights_file
from reslab.tracking.redaction import redact
from reslab.tracking.rundir import RunDir, find_run
from reslab.tracking.wandb_identity import columns, init_args, log_model, mode, run_id, task_metrics

ENTRY = "model.ckpt"  # the one file of a model artifact


# --- the logger's life: start, log, close, finish ---------------------------------------------


class ReslabWandb(WandbLogger):
    """Lightning's W&B logger with reslab's checkpoints as artifacts (log_model=all: each new
    best.ckpt as it is written; the end-of-run ones in `close`)."""

    def __init__(self, cfg: Config, run: RunDir, **kwargs):
        super().__init__(log_model=False, **kwargs)
        wandb_init_args(self).pop("anonymous", None)  # Lightning's default; W&B warns it is unused
        self.cfg, self.run, self.lost = cfg, run, False

    def log_metrics(self, metrics, step=None) -> None:
        """W&B's service can die mid-run (SLURM signals every process of a cancelled job step,
        and a log between the signal and the step boundary killed rank 0, so DDP never stopped
        cleanly): a failed log is one warning, and W&B sits out the rest of the run."""
        if self.lost:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as e:  # noqa: BLE001 - W&B never decides how a run ends
            self.lost = True
            warnings.warn(f"W&B stopped logging ({type(e).__name__}: {str(e)[:200]}); "
                          "metrics.csv and summary.json are complete", Warned, stacklevel=2)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if log_model(self.cfg) != "all" or \
                not checkpoint_callback.best_model_path or wandb_run_if_started(self) is None:
            return
        score = checkpoint_callback.best_model_score
        guarded(log_checkpoint, self.experiment, self.cfg, self.run,
                checkpoint_callback.best_model_path, ["best"],
                {"score": None if score is None else float(score)})

    def close(self, summary: dict) -> None:
        """The summary (every key of summary.json) and the end-of-run checkpoints."""
        if wandb_run_if_started(self) is None or self.lost:
            return
        guarded(self.experiment.summary.update, wandb_summary(summary, self.cfg))
        if summary.get("status") != "failed":
            guarded(log_end_of_run, self.experiment, self.cfg, self.run, summary)


def wandb_logger(cfg: Config, run: RunDir) -> ReslabWandb | None:
    """The W&B logger, or None when W&B is off (recipe or WANDB_MODE=disabled: no W&B files)
    or cannot start — training never fails because of W&B."""
    if mode(cfg) == "disabled":
        return None
    quiet_wandb()
    try:
        args = init_args(cfg, run)
        logger = ReslabWandb(cfg, run, save_dir=args.pop("dir"), settings=settings(cfg), **args)
        experiment = logger.experiment  # start now: a failure is caught here, not mid-training
        define_metrics(experiment, cfg)
        guarded(use_pretrained, experiment, cfg)
        return logger
    except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
        warnings.warn(f"W&B could not start ({type(e).__name__}: {str(e)[:200]}); "
                      "continuing with metrics.csv only", Warned, stacklevel=2)
        finish_wandb()
        return None


def settings(cfg: Config):
    """System metrics and console capture follow the config (both on by default)."""
    w = cfg.logger.wandb
    return wandb_settings(w.system_metrics, save_code=False, console="auto" if w.console else "off",
                          init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)))


def define_metrics(experiment, cfg: Config) -> None:
    """Every metric against the global step (Lightning defines that), and the monitored metric's
    best as well as its last value in the summary (val/err min, val/psnr max)."""
    metric, direction = task_metrics(cfg).monitor
    experiment.define_metric(metric, step_metric="trainer/global_step", summary=f"{direction},last")


def wandb_summary(summary: dict, cfg: Config) -> dict:
    """summary.json as the W&B summary: the same keys and values, except the monitored metric,
    which W&B keeps as {min|max: best, last: value} (define_metric) — its `last` is
    summary.json's value and its best is summary.json's `<metric>_best`."""
    metric, direction = task_metrics(cfg).monitor
    out = redact(summary)
    if metric in out:
        out[metric] = {direction: summary.get(f"{metric}_best", summary[metric]),
                       "last": summary[metric]}
    return out


def finish_wandb(summary: dict | None = None, loggers: list = ()) -> None:
    """Close the W&B run with the run's summary; a W&B failure here (its service killed with the
    job) is a warning."""
    if "wandb" not in sys.modules:
        return
    import wandb

    for logger in loggers:
        if isinstance(logger, ReslabWandb) and summary is not None:
            logger.close(summary)
    if wandb.run is not None:
        guarded(wandb.finish)
    # finish() returns before W&B's service has written the run's last records; teardown waits
    # for them, so the run directory is complete (syncable) when reslab returns. It also drops
    # the settings W&B keeps for the whole process (mode, server) — also after a run that could
    # not start — so the next run in this process (a sweep's reused worker) starts from its own.
    guarded(wandb.teardown)


def test_to_wandb(cfg: Config, run: RunDir, summary: dict) -> None:
    """`reslab test`: the run's summary, test metrics included, into the same W&B run (resumed
    by its id; offline: a second offline-run folder with the same id, merged on sync)."""
    if mode(cfg) == "disabled":
        return
    quiet_wandb()
    try:
        import wandb

        args = {k: v for k, v in init_args(cfg, run).items()
                if k in ("id", "resume", "dir", "project", "entity", "mode")}
        experiment = wandb.init(**args, settings=settings(cfg))
        experiment.summary.update(wandb_summary(summary, cfg))
    except Exception as e:  # noqa: BLE001 - the test result is in summary.json regardless
        warnings.warn(f"W&B could not record the test ({type(e).__name__}: {str(e)[:200]}); "
                      "summary.json holds it", Warned, stacklevel=2)
    finish_wandb()


def guarded(fn, *args) -> Any:
    """Call a W&B step; a failure is a warning (W&B never decides how a run ends)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B: {getattr(fn, '__name__', fn)} failed ({type(e).__name__}: "
                      f"{str(e)[:200]}); metrics.csv and summary.json are complete", Warned, stacklevel=2)
        return None


def quiet_wandb() -> None:
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")


# --- checkpoints as model artifacts; a fine-tune's lineage ------------------------------------


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
