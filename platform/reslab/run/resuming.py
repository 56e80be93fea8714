"""`--resume` continues the same experiment. What an attempt may change is one list (RESUMABLE),
checked against the run's recorded config.yaml and its checkpoint before anything is written;
anything else would be undone by the checkpoint (Lightning restores the optimizer, the schedule
and the RNG streams from it), fail inside Lightning (fewer epochs than trained, another
optimizer's state) or make the record lie (other data, another place), so it is refused with
what to do instead. The learning rate is the one restored value a resume does change: the
ConfigLearningRate callback re-applies the config's after the restore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from torch import nn

from reslab.config.load import flatten, to_dict
from reslab.config.schema import Config, OptimConfig
from reslab.errors import UserError
from reslab.tasks.optim import param_groups
from reslab.tracking import checkpoint
from reslab.tracking.records import checked_summary, config_changes, covered, read_metrics
from reslab.tracking.rundir import RunDir

# The keys a resume may change (a prefix ending in "." covers a section): how long it trains,
# its learning rate (ConfigLearningRate), where and how fast it computes, how it logs and tests,
# and the job around it. Every other key, and any key added later, is refused by default.
RESUMABLE = (
    "trainer.max_epochs", "trainer.max_steps", "optim.lr", "optim.backbone_lr_mult",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.sync_batchnorm",
    "trainer.deterministic", "trainer.channels_last", "trainer.compile",
    "trainer.cudnn_benchmark", "data.num_workers", "data.download",
    "trainer.log_every_n_steps", "trainer.progress_bar", "trainer.check_val_every_n_epoch",
    "trainer.checkpoint_every_n_steps", "diagnostics.every_n_steps", "run.test",
    "logger.", "slurm.",
)


COMPLETE = (None, -1)  # resume_point's answer for a completed run with nothing left to train


def resume_point(run: RunDir, task: nn.Module, cfg: Config) -> tuple[Path | None, int | None]:
    """The checkpoint to continue `run` from and its step, checked against the model and the
    run's progress before anything is written; (None, None) for a run that has not trained yet
    (a submitted job's first attempt); COMPLETE when the run completed and `cfg` asks for no
    more training."""
    check_written_over(run)
    ckpt, step = checkpoint.newest_valid([run.last_ckpt, run.best_ckpt])
    record = checked_summary(run)
    read_metrics(run)  # a damaged metrics.csv, refused before the attempt begins
    if ckpt is None:
        trained = record.get("global_step")
        if record.get("status") == "completed" or isinstance(trained, int) and trained > 0:
            raise UserError(f"{run.path} has trained (status {record.get('status')}, step "
                            f"{trained}) but holds no checkpoint to resume from; start a new "
                            "run instead")
        return None, None
    checkpoint.check_fits(ckpt, task)
    check_trained_with(run, ckpt, cfg)
    done = progress(ckpt)
    check_length(run, cfg, done)
    if record.get("status") == "completed" and nothing_left(cfg, done):
        return COMPLETE
    return ckpt, step


def check_written_over(run: RunDir) -> None:
    """The checkpoints an attempt writes over or tests with, refused before it begins where it
    could not: a last.ckpt that is not a regular file (a folder: the first save failed after
    training had begun) and a damaged best.ckpt (the test at the end failed after the whole
    attempt, and every later resume the same). A damaged regular last.ckpt is newest_valid's
    to pass over: the next save replaces it."""
    last, best = run.last_ckpt, run.best_ckpt
    if last.is_symlink() or last.exists() and not last.is_file():
        raise UserError(f"{last} is not a regular file; move it aside and resume again")
    if best.exists() or best.is_symlink():
        try:
            checkpoint.state_dict(checkpoint.load(best, mmap=True), best)
        except UserError as e:
            raise UserError(f"{e}; move it aside and resume again (the attempt writes a new "
                            "best.ckpt), or restore it") from None


def check_trained_with(run: RunDir, ckpt: Path, cfg: Config) -> None:
    """config.yaml, edited by hand, is not the config the checkpoint was trained with (what it
    records: callbacks.TrainedWith; a checkpoint of an older reslab records none): the resume
    would train on with the edit and record it as the run's (overrides of the same keys are
    refused by check_config)."""
    trained = checkpoint.load(ckpt, mmap=True).get("config")
    if not isinstance(trained, dict):
        return
    for key, value in flatten(to_dict(cfg)).items():
        if key in trained and trained[key] != value and not covered(key, RESUMABLE):
            raise UserError(f"{run.config} says {key}={value}, but {ckpt.name} was trained with "
                            f"{key}={trained[key]}: a resume continues the experiment as it was "
                            "trained; put the value back, or start a new run with "
                            f"model.weights={run.path}")


def check_config(run: RunDir, cfg: Config) -> None:
    """Refuse a change to anything but RESUMABLE keys, comparing with config.yaml."""
    for key, old, new in config_changes(run, cfg, RESUMABLE)[:1]:
        raise UserError(f"--resume cannot change {key} ({old} -> {new}): a resume continues the "
                        f"experiment in {run.path} as it was started; start a new run with "
                        f"model.weights={run.path} to train from its weights with that change")


@dataclass(frozen=True)
class Progress:
    """How far a checkpoint trained, as Lightning counts it on resume: epochs whose training
    pass ended (an epoch max_steps cut short counts), epochs begun, optimizer steps."""

    epochs_done: int
    epochs_begun: int
    step: int


def progress(ckpt: Path) -> Progress:
    """Lightning's loop counters in the checkpoint (its `epoch` alone cannot tell a finished
    epoch from a begun one)."""
    saved = checkpoint.load(ckpt, mmap=True)
    step = int(saved.get("global_step", 0))
    try:
        epochs = saved["loops"]["fit_loop"]["epoch_progress"]["current"]
        return Progress(int(epochs["processed"]), int(epochs["started"]), step)
    except (KeyError, TypeError, ValueError):  # no loop state: Lightning resumes at `epoch`
        return Progress(int(saved.get("epoch", 0)), int(saved.get("epoch", 0)), step)


def check_length(run: RunDir, cfg: Config, done: Progress) -> None:
    """Trained epochs and steps cannot be untrained: a shorter run is a new run."""
    t = cfg.trainer
    if t.max_epochs != -1 and t.max_epochs < done.epochs_begun:
        raise UserError(f"--resume cannot end at trainer.max_epochs={t.max_epochs}: {run.path} "
                        f"has begun {done.epochs_begun} epochs (step {done.step}); give at least "
                        f"{done.epochs_begun}, or start a new run with model.weights={run.path}")
    if t.max_steps != -1 and t.max_steps < done.step:
        raise UserError(f"--resume cannot end at trainer.max_steps={t.max_steps}: {run.path} "
                        f"has trained {done.step} steps; give at least {done.step} (or -1), or "
                        f"start a new run with model.weights={run.path}")


def nothing_left(cfg: Config, done: Progress) -> bool:
    """Lightning's own stop rule: the epoch or the step limit is reached."""
    t = cfg.trainer
    return (t.max_epochs != -1 and done.epochs_done >= t.max_epochs) or \
        (t.max_steps != -1 and done.step >= t.max_steps)


class ConfigLearningRate(Callback):
    """Lightning restores each optimizer group's learning rate and the schedule's base rates from
    the checkpoint, which silently undid an `optim.lr` (or `optim.backbone_lr_mult`) given to
    --resume. After the restore (on_train_start), each group's rate is scaled by config / saved,
    so the schedule continues at the same point from the config's base rate. With unchanged
    keys the factor is exactly 1: a plain resume stays bitwise the uninterrupted run."""

    def __init__(self, optim: OptimConfig):
        self.optim = optim

    def on_train_start(self, trainer, pl_module) -> None:
        lrs = [g["lr"] for g in param_groups(pl_module.net, self.optim)]
        for sched in (c.scheduler for c in trainer.lr_scheduler_configs):
            for group, saved, new in zip(sched.optimizer.param_groups, sched.base_lrs, lrs):
                if saved:  # a group at rate 0 (backbone_lr_mult=0) gets its rate at the next step
                    group["lr"] *= new / saved
                group["initial_lr"] = new
            sched.base_lrs = lrs
            for fn in sched.lr_lambdas:  # the ResNet-110 warm-up rate stays optim.warmup_lr
                if getattr(fn, "warm_factor", None) and self.optim.warmup_lr:
                    fn.warm_factor = self.optim.warmup_lr / self.optim.lr


class MovedRun(Callback):
    """A run directory that was moved or copied keeps its best checkpoint's score on resume:
    Lightning's ModelCheckpoint drops its state when the saved folder differs from its own, so
    the next validation, worse or not, replaced best.ckpt. Before that state is restored, its
    paths move to the run's own checkpoints/ folder."""

    def __init__(self, folder: Path):
        self.folder = str(folder)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for key, state in checkpoint.get("callbacks", {}).items():
            old = state.get("dirpath") if key.startswith("ModelCheckpoint") else None
            if isinstance(old, str) and old != self.folder:
                checkpoint["callbacks"][key] = relocated(state, old, self.folder)


def relocated(state: dict, old: str, new: str) -> dict:
    def move(path):
        return new + path[len(old):] if isinstance(path, str) and path.startswith(old) else path

    return {**{k: move(v) for k, v in state.items()},
            "best_k_models": {move(k): v for k, v in state.get("best_k_models", {}).items()}}


def callbacks(cfg: Config, run: RunDir) -> list[Callback]:
    """What a resume from a checkpoint adds to the Trainer."""
    return [ConfigLearningRate(cfg.optim), MovedRun(run.checkpoints)]
