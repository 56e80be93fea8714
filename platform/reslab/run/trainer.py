"""The Trainer, built here and nowhere else: the run's loggers (metrics.csv, W&B), callbacks
(best.ckpt, RNG state, diagnostics, progress), devices, precision, DDP strategy and the SLURM
environment; and the process-wide settings every training or evaluating process needs."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from reslab import tasks
from reslab.config.schema import Config
from reslab.environment import in_slurm_step
from reslab.run import progress
from reslab.run.callbacks import RNGState, SignalPropagation, TrainedWith
from reslab.tracking import checkpoint
from reslab.tracking.loggers import CSVMetrics
from reslab.tracking.rundir import RunDir
from reslab.tracking.wandb_run import wandb_logger


def loggers(cfg: Config, run: RunDir, resume_step: int | None) -> list:
    out = [CSVMetrics(run, resume_step)]
    if wb := wandb_logger(cfg, run):
        out.append(wb)
    return out


def build_trainer(cfg: Config, run: RunDir, task: tasks.Task, loggers: list,
                  extra_callbacks: list = ()) -> L.Trainer:
    t = cfg.trainer
    metric, mode = task.METRICS.monitor
    # best.ckpt follows the monitored metric; last.ckpt is LastCheckpoint's, the last state.
    best = ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor=metric, mode=mode,
                           save_last=False, enable_version_counter=False)
    callbacks = [best, RNGState(), TrainedWith(cfg), *extra_callbacks]
    if cfg.diagnostics.every_n_steps > 0:
        callbacks.append(SignalPropagation(cfg.diagnostics.every_n_steps))
    if shown := progress.progress_callback(t.progress_bar):  # the run's bar, or epoch lines
        callbacks.append(shown)
    return L.Trainer(
        default_root_dir=run.path, logger=loggers, callbacks=callbacks,
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=str(t.accelerator),
        devices=t.devices, num_nodes=t.num_nodes, precision=task.fast_path["precision"],
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        gradient_clip_val=t.gradient_clip_val, limit_train_batches=t.limit_train_batches,
        enable_progress_bar=False, enable_model_summary=False,
        plugins=plugins(), strategy=strategy(cfg), num_sanity_val_steps=0,
        # deterministic wins: cuDNN's choice of kernels by timing is not reproducible
        benchmark=t.cudnn_benchmark and not t.deterministic, sync_batchnorm=t.sync_batchnorm,
    )


def plugins() -> list:
    out = [checkpoint.AtomicCheckpointIO()]
    if in_slurm_step():
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # reslab owns requeueing (LastCheckpoint): Lightning's own USR1 handler must be off.
        out.append(SLURMEnvironment(auto_requeue=False))
    return out


def strategy(cfg: Config):
    t = cfg.trainer
    if t.devices * t.num_nodes == 1:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend="nccl" if uses_cuda(cfg) else "gloo",
                       find_unused_parameters=False, gradient_as_bucket_view=True)


def uses_cuda(cfg: Config) -> bool:
    """trainer.accelerator gpu/cuda, or auto on a machine with a GPU."""
    return tasks.fastpath.device_type(cfg.trainer.accelerator) == "cuda"


def prepare_process() -> None:
    """Process-wide settings for training and evaluating (the bench's both sides too).
    Denormal floats (the tiny activations and gradients of very deep nets) are slow on x86
    CPUs: flushed to zero, a ResNet-1202 step on digits took 1.7 s instead of 48-85 s.
    Lightning's info banners and known-harmless warnings would bury reslab's own output.
    Freed memory is kept for the next step instead of page-faulted back (fastpath)."""
    torch.set_flush_denormal(True)
    tasks.fastpath.keep_freed_memory()
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (".*does not have many workers.*", ".*`isinstance.*treespec.*",
                ".*Checkpoint directory .* exists and is not empty.*",
                ".*The number of training batches .* is smaller than the logging interval.*",
                ".*The `srun` command is available on your system but is not used.*",
                # max_steps ending mid-epoch, before the first validation: no best.ckpt yet,
                # and the run's test uses the last weights (its summary says which)
                ".*could not find the monitored key in the returned metrics.*"):
        warnings.filterwarnings("ignore", message=msg)



def test_trainer(cfg: Config, run: RunDir, task: tasks.Task) -> L.Trainer:
    """A Trainer that only tests: one device, no loggers, the task's precision."""
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                     accelerator=str(cfg.trainer.accelerator), devices=1,
                     precision=task.fast_path["precision"], default_root_dir=run.path)
