"""fit(cfg) -> summary: the ONE training path (the CLI, a SLURM job and a Ray trial all call it).
The Trainer it fits with is reslab.run.trainer's; stopping and requeueing, reslab.run.stopping's."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from reslab import environment, tasks
from reslab.config.schema import Config
from reslab.errors import Interrupted
from reslab.models.profile import count_params
from reslab.run import resuming
from reslab.run.build import build_net_and_data
from reslab.run.stopping import (
    LastCheckpoint,
    Stopped,
    ended_by,
    lightning_interrupts,
    requeue,
    stopped_status,
)
from reslab.run.trainer import build_trainer, loggers, prepare_process
from reslab.tracking import checkpoint, records, rundir
from reslab.tracking.rundir import RunDir
from reslab.tracking.wandb_identity import mode as wandb_mode
from reslab.tracking.wandb_run import finish_wandb


def fit(cfg: Config, resume: RunDir | None = None, callbacks: list = (),
        overrides: list[str] = (), record=None) -> dict:
    """Train `cfg` in a new run directory (or continue `resume`: a run directory, with or without
    a checkpoint yet) and return its summary. Under SLURM every rank calls this; only global
    rank 0 writes files (and holds the run directory's lock). `callbacks` are added to the
    Trainer (a sweep's Tune reporter); `overrides` (the KEY=VALUE items `cfg` was loaded with)
    go into summary.json's record of this attempt. `record()` gives fields the caller adds to
    the attempt's final summary.json, which is written once (a sweep trial's own timing).

    The steps: prepare -> build -> open the run -> the Trainer -> fit -> test -> record ->
    follow up (requeue, or the interrupt). Anything that can refuse the run happens before its
    directory exists."""
    prepare(cfg, resume)
    built = build_net_and_data(cfg)
    task = tasks.build_task(cfg, built.net, built.datamodule)
    run = resume or new_run(cfg)
    with records.locked(run) if is_rank_zero() else contextlib.nullcontext(), interrupts_of(run):
        start = resuming.resume_point(run, task, cfg) if resume else (None, None)
        if start is resuming.COMPLETE:
            return said_complete(run)
        if is_rank_zero():  # nothing refused the attempt: config.yaml is now what it trains
            records.begin_attempt(run, cfg, list(overrides), start[1])
        if start[0] is not None:
            callbacks = [*resuming.callbacks(cfg, run), *callbacks]
        return train_in(run, cfg, built, task, start, callbacks, record)


@contextlib.contextmanager
def interrupts_of(run: RunDir):
    """Ctrl-C or SIGTERM outside a step boundary (building the Trainer, the test at the end):
    the run is recorded `interrupted`, not left `running`, and the interrupt names the run, so
    the CLI can say how to resume it (a sweep's trial re-raises it as it was)."""
    try:
        yield
    except KeyboardInterrupt as e:
        e.run = str(run.path)
        if is_rank_zero() and (summary := records.read_summary(run)).get("status") == "running":
            records.write_summary(run, {**summary, "status": "interrupted"})
        raise


def prepare(cfg: Config, resume: RunDir | None) -> None:
    """What must hold before anything is built: process settings, this process's place in a
    distributed launch (a launcher for more than one node, else DDP waits for the other nodes
    forever; no stray rank, which writes no records), a resume's config (cheap, and before the
    network is built), the seed."""
    prepare_process()
    environment.check_launch(cfg.trainer.devices, cfg.trainer.num_nodes)
    wandb_mode(cfg)  # a WANDB_MODE that W&B would refuse
    if resume:
        resuming.check_config(resume, cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)


def said_complete(run: RunDir) -> dict:
    summary = records.read_summary(run)
    say(f"{run.path} is complete ({summary.get('epoch')} epochs, step "
        f"{summary.get('global_step')}): nothing to train; raise trainer.max_epochs to train on, "
        f"or `reslab test {run.path}` to evaluate again")
    return summary


def train_in(run: RunDir, cfg: Config, built, task: tasks.Task,
             start: tuple[Path | None, int | None], callbacks: list, record=None) -> dict:
    """Fit (and test) in `run`, from the checkpoint in `start` if any; the summary records every
    outcome."""
    ckpt, resume_step = start
    task.samples = run.samples
    say(f"run directory: {run.path}" + (f" (resuming at step {resume_step})" if ckpt else ""))
    summary = start_summary(run, built.net, resume_step)
    trainer = run_trainer(cfg, run, task, resume_step, callbacks)
    with recorded(run, cfg, summary, trainer, task, record):
        trainer.fit(task, datamodule=built.datamodule, ckpt_path=ckpt)
        summary.update(collect(trainer, task))
        if cfg.run.test:
            test_at_the_end(run, trainer, task, built.datamodule, summary)
    return follow_up(run, trainer, summary)


def run_trainer(cfg: Config, run: RunDir, task: tasks.Task, resume_step: int | None,
                callbacks: list) -> L.Trainer:
    """The Trainer for this attempt: the run's loggers, and last.ckpt kept by LastCheckpoint."""
    last = LastCheckpoint(run.last_ckpt, cfg.trainer.checkpoint_every_n_steps)
    trainer = build_trainer(cfg, run, task, loggers(cfg, run, resume_step), [last, *callbacks])
    if trainer.world_size > 1:
        say(f"world size {trainer.world_size} ({trainer.num_nodes} nodes x "
            f"{trainer.num_devices} devices, DDP)")
    return trainer


@contextlib.contextmanager
def recorded(run: RunDir, cfg: Config, summary: dict, trainer: L.Trainer, task: tasks.Task,
             record=None):
    """Whatever ends the attempt, summary.json says how (completed; stopped by a signal:
    preempted or interrupted; failed, stopped by a sweep's scheduler, Ctrl-C: then re-raised),
    with its wall time and the caller's `record()`, and W&B's summary is the same dict."""
    t0, wall_before = time.perf_counter(), summary.get("wall_s", 0.0)
    try:
        with lightning_interrupts():
            yield
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


def follow_up(run: RunDir, trainer: L.Trainer, summary: dict) -> dict:
    """After the record is written: a preempted SLURM job requeues itself; an interrupted run
    ends the command with the resume sentence (exit 130/143)."""
    if summary["status"] == "preempted" and is_rank_zero():
        say(f"preempted at step {trainer.global_step}: checkpoint saved, requeueing")
        requeue(environment.job_id())
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
    records.record_test(summary, best, step, "train", [],
                        {k: v for k, v in summary.items() if k.startswith("test/")})


def new_run(cfg: Config) -> RunDir:
    """Rank 0 creates the run directory; other local DDP ranks (started later by Lightning)
    write nothing, so the name they compute is never used."""
    if is_rank_zero():
        return records.open_run(cfg)
    return RunDir(rundir.run_path(cfg, rundir.new_run_id()))


def start_summary(run: RunDir, net: torch.nn.Module, resumed_at: int | None) -> dict:
    """The run's record while it trains: what an earlier attempt wrote, now `running`."""
    summary = {**records.read_summary(run), "run_id": run.run_id, "status": "running",
               "params": count_params(net), "env": environment.env_info()}
    summary.pop("error", None)
    if resumed_at is not None:
        summary["resumed_at_steps"] = [*summary.get("resumed_at_steps", []), resumed_at]
    write_summary(run, summary)
    return summary


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


def is_rank_zero() -> bool:
    return rank_zero_only.rank == 0


def say(line: str) -> None:
    if is_rank_zero():
        print(line, flush=True)


def write_summary(run: RunDir, summary: dict) -> None:
    if is_rank_zero():
        records.write_summary(run, summary)


