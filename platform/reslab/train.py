"""fit(cfg) -> summary: the ONE training path. The CLI, a SLURM job and a Ray trial all call it."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from reslab import checkpoint, data, models, slurm, tasks, tracking
from reslab import config as C
from reslab.callbacks import EpochLine, RNGState, SignalPropagation
from reslab.errors import UserError
from reslab.tracking import RunDir, is_rank_zero


def quiet_lightning() -> None:
    """Lightning's info banners and known-harmless warnings would bury reslab's own output."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (".*does not have many workers.*", ".*`isinstance.*treespec.*",
                ".*Checkpoint directory .* exists and is not empty.*",
                ".*The number of training batches .* is smaller than the logging interval.*",
                ".*The `srun` command is available on your system but is not used.*"):
        warnings.filterwarnings("ignore", message=msg)


def prepare(cfg):
    """Everything that can refuse the config — data present, model buildable, weights that fit
    — before any file is written."""
    from reslab import pretrained

    spec = cfg.model.weights
    if pretrained.is_torchvision_name(spec) and cfg.data.mean is None:
        # Inputs match the weights: their own normalisation and resize, unless the recipe says.
        tf = pretrained.torchvision_weights(cfg.model.name, cfg.model.depth, spec).transforms()
        cfg.data.mean, cfg.data.std = list(tf.mean), list(tf.std)
        cfg.data.resize_size = cfg.data.resize_size or tf.resize_size[0]
    dm = data.build(cfg.data, cfg.seed)
    dm.check()
    net = models.build_model(cfg.model.name, **data.model_args(dm), **C.model_kwargs(cfg))
    if cfg.diagnostics.every_n_steps and not hasattr(net, "blocks"):
        raise UserError(f"diagnostics.every_n_steps needs a model with residual blocks (a ResNet "
                        f"or edsr), got model.name={cfg.model.name}; set it to 0")
    pretrained.load_into(net, spec, cfg.model.name, cfg.model.depth)
    pretrained.freeze(net, cfg.model.freeze)
    return dm, net


def fit(cfg, resume: RunDir | None = None, callbacks: list = ()) -> dict:
    """Train `cfg` in a new run directory (or continue `resume`: a run directory, with or without
    a checkpoint yet) and return its summary. Under SLURM every rank calls this; only global
    rank 0 writes files. `callbacks` are added to the Trainer (a sweep's Tune reporter)."""
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm, net = prepare(cfg)
    run = resume or tracking.open_run(cfg)
    ckpt, resume_step = checkpoint.newest_valid([run.last_ckpt, run.best_ckpt]) if resume \
        else (None, None)
    if is_rank_zero():
        print(f"run directory: {run.path}" + (f" (resuming at step {resume_step})" if ckpt else ""),
              flush=True)

    task = tasks.build(cfg, net, dm)
    summary = {**tracking.read_summary(run), "run_id": run.run_id, "status": "running",
               "params": models.count_params(net), "env": tracking.env_info()}
    summary.pop("error", None)
    if ckpt:
        summary["resumed_at_steps"] = [*summary.get("resumed_at_steps", []), resume_step]
    tracking.write_summary(run, summary)
    loggers = [tracking.CSVMetrics(run.metrics, resume_step)]
    if wb := tracking.wandb_logger(cfg, run):
        loggers.append(wb)
    steps = slurm.StepCheckpoint(run.last_ckpt, cfg.trainer.checkpoint_every_n_steps)
    trainer = build_trainer(cfg, run, task, loggers, [steps, *callbacks])
    if is_rank_zero() and trainer.world_size > 1:
        print(f"world size {trainer.world_size} ({trainer.num_nodes} nodes x "
              f"{trainer.num_devices} devices, DDP)", flush=True)
    t0, wall_before = time.perf_counter(), summary.get("wall_s", 0.0)
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt)
        summary.update(collect(trainer, task))
        if cfg.run.test:
            best = run.best_ckpt if run.best_ckpt.is_file() else None
            trainer.test(task, datamodule=dm, ckpt_path=best, verbose=False)
            summary.update(collect(trainer, task))
        summary["status"] = "completed"
    except slurm.Preempted:
        summary.update(collect(trainer, task))
        summary.update(preempted_status(cfg))
    except BaseException as e:
        summary.update(collect(trainer, task))
        summary.update(status="failed", error=f"{type(e).__name__}: {e}"[:500])
        raise
    finally:
        summary["wall_s"] = round(wall_before + time.perf_counter() - t0, 3)
        tracking.write_summary(run, summary)
        tracking.finish_wandb()
    if summary["status"] == "preempted" and is_rank_zero():
        print(f"preempted at step {trainer.global_step}: checkpoint saved, requeueing", flush=True)
        slurm.requeue(slurm.job_id())
    return summary


def preempted_status(cfg) -> dict:
    """Requeue unless the job has used up slurm.max_restarts."""
    n, limit = slurm.restarts(), cfg.slurm.max_restarts
    if slurm.job_id() is None:
        return {"status": "failed", "error": "preemption signal outside a SLURM job"}
    if n >= limit:
        return {"status": "failed", "error": f"preempted after {n} restarts, the limit "
                                             f"slurm.max_restarts={limit}; resume with "
                                             "`reslab train --resume RUN_DIR`"}
    return {"status": "preempted", "restarts": n}


def build_trainer(cfg, run: RunDir, task: tasks.Task, loggers: list, extra_callbacks: list = ()
                  ) -> L.Trainer:
    t = cfg.trainer
    metric, mode = task.MONITOR
    best = ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor=metric, mode=mode,
                           save_last=True, enable_version_counter=False)
    callbacks = [best, RNGState(), *extra_callbacks]
    if cfg.diagnostics.every_n_steps > 0:
        callbacks.append(SignalPropagation(cfg.diagnostics.every_n_steps))
    tty = sys.stdout.isatty()
    if t.progress_bar and tty:
        callbacks.append(TQDMProgressBar(refresh_rate=10))  # a refresh reads metrics on the host
    elif t.progress_bar:
        callbacks.append(EpochLine())
    return L.Trainer(
        default_root_dir=run.path, logger=loggers, callbacks=callbacks,
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator,
        devices=t.devices, num_nodes=t.num_nodes, precision=t.precision,
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        gradient_clip_val=t.gradient_clip_val, limit_train_batches=t.limit_train_batches,
        enable_progress_bar=t.progress_bar and tty, enable_model_summary=False,
        plugins=plugins(), strategy=strategy(cfg), num_sanity_val_steps=0,
        benchmark=t.cudnn_benchmark, sync_batchnorm=t.sync_batchnorm,
    )


def plugins() -> list:
    out = [checkpoint.AtomicCheckpointIO()]
    if slurm.in_slurm_step():
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # reslab owns requeueing (StepCheckpoint): Lightning's own USR1 handler must be off.
        out.append(SLURMEnvironment(auto_requeue=False))
    return out


def strategy(cfg):
    t = cfg.trainer
    if t.devices * t.num_nodes == 1:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend="nccl" if uses_cuda(cfg) else "gloo",
                       find_unused_parameters=False, gradient_as_bucket_view=True)


def uses_cuda(cfg) -> bool:
    """trainer.accelerator gpu/cuda, or auto on a machine with a GPU."""
    t = cfg.trainer.accelerator
    return t in ("gpu", "cuda") or (t == "auto" and torch.cuda.is_available())


def collect(trainer: L.Trainer, task) -> dict:
    """The summary's metrics: the last logged value of each (callback_metrics holds only the
    latest stage's, so this runs after fit and again after test)."""
    m = trainer.callback_metrics
    out = {k: float(m[k]) for k in task.SUMMARY if k in m}
    out.update(global_step=trainer.global_step, epoch=trainer.current_epoch)
    if task.throughput:
        rates = sorted(task.throughput)
        out["images_per_s"] = round(rates[len(rates) // 2], 1)  # median epoch: robust to warm-up
    return out


def test(run: RunDir, overrides: list[str] = (), ckpt: Path | None = None) -> dict:
    """Evaluate `ckpt` (default: the run's best, else last) on the run's test split; the result
    goes into summary.json."""
    quiet_lightning()
    cfg = C.load([run.config], overrides)
    ckpt = ckpt or run.weights_ckpt
    state = checkpoint.load(ckpt)
    dm, net = prepare(cfg)
    task = tasks.build(cfg, net, dm)
    task.load_state_dict(state["state_dict"])
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator=cfg.trainer.accelerator, devices=1,
                        precision=cfg.trainer.precision, default_root_dir=run.path)
    trainer.test(task, datamodule=dm, verbose=False)
    result = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    tracking.write_summary(run, {**tracking.read_summary(run), **result,
                                 "test_checkpoint": str(Path(ckpt).name)})
    return result
