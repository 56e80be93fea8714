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

from reslab import checkpoint
from reslab.config.load import flatten, load, to_dict
from reslab.config.schema import Config, OptimConfig
from reslab.errors import UserError
from reslab.rundir import RunDir
from reslab.tasks.optim import param_groups

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


def resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE)


def check_config(run: RunDir, cfg: Config) -> None:
    """Refuse a change to anything but RESUMABLE keys, comparing with config.yaml."""
    recorded, new = (flatten(to_dict(c)) for c in (load([run.config]), cfg))
    for key, value in new.items():
        if value != recorded.get(key) and not resumable(key):
            raise UserError(f"--resume cannot change {key} ({recorded.get(key)} -> {value}): a "
                            f"resume continues the experiment in {run.path} as it was started; "
                            f"start a new run with model.weights={run.path} to train from its "
                            f"weights with that change")


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
