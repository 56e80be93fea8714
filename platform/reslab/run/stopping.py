"""Stopping and preemption, in one place: a stop signal (Ctrl-C, SIGTERM; USR1 under SLURM, sent
before the time limit) ends fit at a step boundary with `last.ckpt` written, and the run's status
says what happens next (SLURM requeues a preempted job; elsewhere the user resumes).

Why a flag and a step boundary (He et al. is a 64k-iteration recipe, so preemption is routine):
the signal handler only sets a flag; at the next step boundary every rank agrees on it,
`last.ckpt` is written into the run's stable directory and fit ends (`Stopped`). Saving inside
the handler could deadlock (the handler may interrupt a collective or a write) or never finish;
the caller then requeues the job or exits 130/143."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from reslab.compat import lightning_keyboard_interrupt
from reslab.environment import JOB_ID, in_slurm_step, restarts
from reslab.errors import TrainingError, UserError


class Stopped(Exception):
    """Raised at a step boundary after last.ckpt is written because a signal asked the run to
    stop: it ends `fit` at once, before Lightning's end-of-epoch validation could run."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


def stop_signals() -> tuple[int, ...]:
    """Ctrl-C and SIGTERM (`timeout`, a container stop, a cluster's preemption); under SLURM
    also USR1, which `--signal=USR1@margin` sends before the time limit."""
    extra = (signal.SIGUSR1,) if in_slurm_step() else ()
    return (signal.SIGINT, signal.SIGTERM, *extra)


class LastCheckpoint(Callback):
    """last.ckpt is the run's last state, whatever the best: written at the end of every epoch
    and of fit, every `every_n_steps` steps (so a hard kill loses little), at the step boundary
    after a stop signal arrived on any rank (then `Stopped` is raised), and when a
    single-process run fails with finite weights."""

    def __init__(self, path: Path, every_n_steps: int = 0):
        self.path, self.every = path, every_n_steps
        self.signum, self.armed, self.saved_at = 0, False, -1

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its own SIGTERM handler (which ends fit as if it had
        # completed); Lightning puts the original handlers back when fit ends.
        if threading.current_thread() is threading.main_thread():
            for signum in stop_signals():
                signal.signal(signum, self._on_signal)
            self.armed = True

    def _on_signal(self, signum, frame) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = self.signum or signum  # the save happens at the next step boundary

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum = self.signum
        if self.armed and trainer.world_size > 1:  # every rank decides alike at the same step
            t = torch.tensor(float(signum), device=pl_module.device)
            signum = int(trainer.strategy.reduce(t, reduce_op="max").item())
        if signum or self.every and trainer.global_step % self.every == 0:
            self.save(trainer, pl_module)
        if signum:
            raise Stopped(signum, trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.saved_at != trainer.global_step:  # fit ended mid-epoch (trainer.max_steps)
            self.save(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if trainer.world_size == 1 and not isinstance(exception, (Stopped, TrainingError)) \
                and self.saved_at != trainer.global_step:
            with contextlib.suppress(Exception):  # the failure itself is what gets reported
                self.save(trainer, pl_module)

    def save(self, trainer, pl_module) -> None:
        pl_module.check_finite()
        trainer.save_checkpoint(self.path)
        self.saved_at = trainer.global_step


def stopped_status(stop: Stopped, max_restarts: int) -> dict:
    """USR1 (SLURM's warning before the time limit) requeues the job. SIGTERM is SLURM's cancel
    and its preemption alike: the run stops with last.ckpt at the stop step and SLURM decides —
    a preempted job (PreemptMode=REQUEUE) comes back and resumes there, a cancelled one stays
    cancelled. Anything else is an interruption the user resumes."""
    if in_slurm_step() and stop.signum == signal.SIGUSR1:
        return preempted_status(max_restarts)
    return {"status": "interrupted", "stop_signal": stop.signum}


def ended_by(e: BaseException) -> str:
    """A sweep scheduler's early stop (Ray Tune ends the trial with `SystemExit(0)`) is
    `stopped`; Ctrl-C outside a step boundary is `interrupted`; the rest `failed`."""
    if isinstance(e, SystemExit) and e.code in (0, None):
        return "stopped"
    return "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"


@contextlib.contextmanager
def lightning_interrupts():
    """Lightning turns a KeyboardInterrupt into `sys.exit(1)`: give it back as the interrupt."""
    try:
        yield
    except SystemExit as e:
        if lightning_keyboard_interrupt(e):
            raise e.__context__ from None  # Ctrl-C, or SIGTERM (errors.Terminated)
        raise


def requeue(jid: str) -> None:
    if not JOB_ID.match(jid):
        raise UserError(f"refusing to requeue {jid!r}: not a job id")
    subprocess.run(["scontrol", "requeue", jid], check=True, timeout=60)


def preempted_status(max_restarts: int) -> dict:
    """The summary fields after a preemption: requeue unless the job has used up its restarts."""
    n = restarts()
    if n >= max_restarts:
        return {"status": "failed", "error": f"preempted after {n} restarts, the limit "
                                             f"slurm.max_restarts={max_restarts}; resume with "
                                             "`reslab train --resume RUN_DIR`"}
    return {"status": "preempted", "restarts": n}
