"""The Lightning callbacks of the training path: RNG state in checkpoints, the epoch line,
signal-propagation diagnostics, and step-boundary checkpoints (periodic, and on preemption).

Stopping (Ctrl-C, SIGTERM; SLURM preemption — He et al. is a 64k-iteration recipe): the signal
handler only sets a flag; at the next step boundary every rank agrees on it, `last.ckpt` is
written into the run's stable directory and fit ends (`Stopped`); the caller requeues the job or
exits 130/143 (REFERENCE §4: saving inside the signal handler can deadlock or never finish)."""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from reslab.errors import TrainingError
from reslab.slurm.env import in_slurm_step


class RNGState(Callback):
    """Puts every RNG state into the checkpoint (Lightning does not), as plain values, so a
    resumed run continues the exact random streams of the uninterrupted one."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class EpochLine(Callback):
    """One line per epoch when stdout is not a terminal with a size (SLURM logs, CI, `script`):
    a bar there would write thousands of carriage returns. On a terminal, progress.RunBar
    prints the same lines above the run's bar."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    on_train_start = on_train_epoch_start  # a mid-epoch resume gets no on_train_epoch_start

    @rank_zero_only
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        print(self.line(trainer, pl_module), file=sys.stdout, flush=True)

    def line(self, trainer, pl_module) -> str:
        """The epoch's line (progress.RunBar fits the same parts to the terminal's width)."""
        return " ".join(self.parts(trainer, pl_module).values())

    def parts(self, trainer, pl_module) -> dict[str, str]:
        """The epoch line's parts in order: `epoch`, `step`, each progress metric, `time`."""
        m = trainer.callback_metrics
        return {"epoch": f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                "step": f"step {trainer.global_step}",
                **{k: f"{k}={m[k].item():.4f}" for k in pl_module.METRICS.progress if k in m},
                "time": f"({time.perf_counter() - self._t0:.1f}s)"}


class SignalPropagation(Callback):
    """Every `every` steps: the standard deviation of each residual block's branch response
    (He et al. 2015, Fig. 7 "std of layer responses") and the norm of the block's parameter
    gradients, as `diag/block{i}_std` and `diag/block{i}_grad`. Off (no hooks at all) unless
    `diagnostics.every_n_steps` > 0; between measured steps the hooks return at once."""

    def __init__(self, every: int):
        self.every, self.active, self.stds = every, False, {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.blocks = list(pl_module.net.blocks())
        for i, block in enumerate(self.blocks):
            block.branch_output().register_forward_hook(self._hook(i))

    def _hook(self, i: int):
        def record(module, inputs, output):
            if self.active:
                self.stds[i] = output.detach().float().std()
        return record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.active = trainer.global_step % self.every == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.active:
            return
        values = {f"diag/block{i}_std": v for i, v in sorted(self.stds.items())}
        for i, block in enumerate(self.blocks):
            grads = [p.grad.detach().float().norm() for p in block.parameters() if p.grad is not None]
            if grads:
                values[f"diag/block{i}_grad"] = torch.stack(grads).norm()
        # One host read for all blocks, not one per value.
        metrics = dict(zip(values, torch.stack(list(values.values())).tolist())) if values else {}
        self.active = False
        if trainer.is_global_zero:
            for logger in trainer.loggers:  # as Lightning logs: the step's index and epoch
                logger.log_metrics({**metrics, "epoch": trainer.current_epoch},
                                   step=trainer.global_step)


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
