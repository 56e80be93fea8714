"""fit(cfg) -> summary: the ONE training path (the CLI, a SLURM job and a Ray trial all call it),
and evaluate(cfg, run, ckpt) -> a checkpoint's test metrics (`reslab test` records them:
reslab.evaluation). The Trainer is built here and nowhere else."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from reslab import checkpoint, progress, resuming, rundir, tasks
from reslab.build import build
from reslab.callbacks import LastCheckpoint, RNGState, SignalPropagation, Stopped
from reslab.compat import lightning_keyboard_interrupt
from reslab.config.schema import Config
from reslab.errors import Interrupted
from reslab.loggers import CSVMetrics, finish_wandb, wandb_logger
from reslab.models.profile import count_params
from reslab.provenance import env_info
from reslab.rundir import RunDir
from reslab.slurm import env as slurm_env


def fit(cfg: Config, resume: RunDir | None = None, callbacks: list = (),
        overrides: list[str] = (), record=None) -> dict:
    """Train `cfg` in a new run directory (or continue `resume`: a run directory, with or without
    a checkpoint yet) and return its summary. Under SLURM every rank calls this; only global
    rank 0 writes files (and holds the run directory's lock). `callbacks` are added to the
    Trainer (a sweep's Tune reporter); `overrides` (the KEY=VALUE items `cfg` was loaded with)
    go into summary.json's record of this attempt. `record()` gives fields the caller adds to
    the attempt's final summary.json, which is written once (a sweep trial's own timing)."""
    prepare_process()
    slurm_env.check_nodes(cfg.trainer.num_nodes)  # else DDP waits for the other nodes forever
    if resume:
        resuming.check_config(resume, cfg)  # cheap, and before the network is built
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    built = build(cfg)
    task = tasks.build(cfg, built.net, built.datamodule)
    run = resume or new_run(cfg)
    with rundir.locked(run) if is_rank_zero() else contextlib.nullcontext():
        start = resuming.resume_point(run, task, cfg) if resume else (None, None)
        if start is resuming.COMPLETE:
            return said_complete(run)
        if is_rank_zero():  # nothing refused the attempt: config.yaml is now what it trains
            rundir.begin_attempt(run, cfg, list(overrides), start[1])
        if start[0] is not None:
            callbacks = [*resuming.callbacks(cfg, run), *callbacks]
        return train_in(run, cfg, built, task, start, callbacks, record)


def said_complete(run: RunDir) -> dict:
    summary = rundir.read_summary(run)
    say(f"{run.path} is complete ({summary.get('epoch')} epochs, step "
        f"{summary.get('global_step')}): nothing to train; raise trainer.max_epochs to train on, "
        f"or `reslab test {run.path}` to evaluate again")
    return summary


def train_in(run: RunDir, cfg: Config, built, task: tasks.Task,
             start: tuple[Path | None, int | None], callbacks: list, record=None) -> dict:
    """Fit (and test) in `run`, from the checkpoint in `start` if any; the summary records every
    outcome."""
    ckpt, resume_step = start
    say(f"run directory: {run.path}" + (f" (resuming at step {resume_step})" if ckpt else ""))
    summary = start_summary(run, built.net, resume_step)
    trainer = build_trainer(cfg, run, task, loggers(cfg, run, resume_step),
                            [LastCheckpoint(run.last_ckpt, cfg.trainer.checkpoint_every_n_steps),
                             *callbacks])
    if trainer.world_size > 1:
        say(f"world size {trainer.world_size} ({trainer.num_nodes} nodes x "
            f"{trainer.num_devices} devices, DDP)")
    t0, wall_before = time.perf_counter(), summary.get("wall_s", 0.0)
    try:
        with lightning_interrupts():
            trainer.fit(task, datamodule=built.datamodule, ckpt_path=ckpt)
            summary.update(collect(trainer, task))
            if cfg.run.test:
                test_at_the_end(run, trainer, task, built.datamodule, summary)
        summary["status"] = "completed"
    except Stopped as e:
        summary.update(collect(trainer, task))
        summary.update(stopped_status(e, cfg.slurm.max_restarts))
    except BaseException as e:
        summary.update(collect(trainer, task))
        summary.update(status=ended_by(e), error=f"{type(e).__name__}: {e}"[:500])
        raise
    finally:
        summary["wall_s"] = round(wall_before + time.perf_counter() - t0, 3)
        summary.update(record() if record else {})
        write_summary(run, summary)
        finish_wandb(summary, trainer.loggers)  # W&B summary = summary.json, artifacts
    if summary["status"] == "preempted" and is_rank_zero():
        say(f"preempted at step {trainer.global_step}: checkpoint saved, requeueing")
        slurm_env.requeue(slurm_env.job_id())
    if summary["status"] == "interrupted":
        raise Interrupted(summary["stop_signal"], trainer.global_step, str(run.path))
    return summary


def test_at_the_end(run: RunDir, trainer: L.Trainer, task, datamodule, summary: dict) -> None:
    """best.ckpt (else the final state) on the test split: the top-level test/* keys, and the
    first entry of this attempt in `tests` (a manual `reslab test` only adds entries)."""
    best = run.best_ckpt if run.best_ckpt.is_file() else None
    trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
    summary.update(collect(trainer, task))
    for stale in ("test_checkpoint", "test_overrides"):  # a manual test's, before `tests`
        summary.pop(stale, None)
    step = checkpoint.load(best, mmap=True).get("global_step") if best else trainer.global_step
    rundir.record_test(summary, best, step, "train", [],
                       {k: v for k, v in summary.items() if k.startswith("test/")})


def ended_by(e: BaseException) -> str:
    """A sweep scheduler's early stop (Ray Tune ends the trial with `SystemExit(0)`) is
    `stopped`; Ctrl-C outside a step boundary is `interrupted`; the rest `failed`."""
    if isinstance(e, SystemExit) and e.code in (0, None):
        return "stopped"
    return "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"


def stopped_status(stop: Stopped, max_restarts: int) -> dict:
    """USR1 (SLURM's warning before the time limit) requeues the job. SIGTERM is SLURM's cancel
    and its preemption alike: the run stops with last.ckpt at the stop step and SLURM decides —
    a preempted job (PreemptMode=REQUEUE) comes back and resumes there, a cancelled one stays
    cancelled. Anything else is an interruption the user resumes."""
    if slurm_env.in_slurm_step() and stop.signum == signal.SIGUSR1:
        return slurm_env.preempted_status(max_restarts)
    return {"status": "interrupted", "stop_signal": stop.signum}


@contextlib.contextmanager
def lightning_interrupts():
    """Lightning turns a KeyboardInterrupt into `sys.exit(1)`: give it back as the interrupt."""
    try:
        yield
    except SystemExit as e:
        if lightning_keyboard_interrupt(e):
            raise KeyboardInterrupt from None
        raise


def new_run(cfg: Config) -> RunDir:
    """Rank 0 creates the run directory; other local DDP ranks (started later by Lightning)
    write nothing, so the name they compute is never used."""
    if is_rank_zero():
        return rundir.open_run(cfg)
    return RunDir(rundir.run_path(cfg, rundir.new_run_id()))


def start_summary(run: RunDir, net: torch.nn.Module, resumed_at: int | None) -> dict:
    """The run's record while it trains: what an earlier attempt wrote, now `running`."""
    summary = {**rundir.read_summary(run), "run_id": run.run_id, "status": "running",
               "params": count_params(net), "env": env_info()}
    summary.pop("error", None)
    if resumed_at is not None:
        summary["resumed_at_steps"] = [*summary.get("resumed_at_steps", []), resumed_at]
    write_summary(run, summary)
    return summary


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
    callbacks = [best, RNGState(), *extra_callbacks]
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
        benchmark=t.cudnn_benchmark, sync_batchnorm=t.sync_batchnorm,
    )


def plugins() -> list:
    out = [checkpoint.AtomicCheckpointIO()]
    if slurm_env.in_slurm_step():
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


def collect(trainer: L.Trainer, task) -> dict:
    """The summary's metrics: the last logged value of each (callback_metrics holds only the
    latest stage's, so this runs after fit and again after test)."""
    m = trainer.callback_metrics
    out = {k: float(m[k]) for k in task.METRICS.summary if k in m}
    out.update(global_step=trainer.global_step, epoch=trainer.current_epoch)
    out.update(task.fast_path)  # channels_last and compile as used (auto resolved, and why)
    if task.throughput:
        rates = sorted(task.throughput)
        out["images_per_s"] = round(rates[len(rates) // 2], 1)  # median epoch: robust to warm-up
    return out


def evaluate(cfg: Config, run: RunDir, ckpt: Path) -> tuple[dict, int | None]:
    """The test metrics of checkpoint `ckpt` with `cfg` (one device, no loggers), and the step
    it was saved at; `reslab test` (reslab.evaluation) records them."""
    prepare_process()
    state = checkpoint.load(ckpt)
    built = build(cfg)
    task = tasks.build(cfg, built.net, built.datamodule)
    checkpoint.check_fits(ckpt, task)
    task.load_state_dict(checkpoint.state_dict(state, ckpt))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator=str(cfg.trainer.accelerator), devices=1,
                        precision=task.fast_path["precision"], default_root_dir=run.path)
    trainer.test(task, datamodule=built.datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    step = state.get("global_step")
    return metrics, step if isinstance(step, int) else None


def is_rank_zero() -> bool:
    return rank_zero_only.rank == 0


def say(line: str) -> None:
    if is_rank_zero():
        print(line, flush=True)


def write_summary(run: RunDir, summary: dict) -> None:
    if is_rank_zero():
        rundir.write_summary(run, summary)


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
