"""The Lightning callbacks of the training path: RNG state in checkpoints, the epoch line and
signal-propagation diagnostics. Stopping on a signal (LastCheckpoint) is reslab.run.stopping's."""

from __future__ import annotations

import random
import sys
import time

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from reslab.config.load import flatten, to_dict


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


class TrainedWith(Callback):
    """Puts the config a checkpoint was trained with into it (`config`, flat keys): a resume
    compares it with config.yaml, which a hand edit could have changed (resuming.py)."""

    def __init__(self, cfg):
        self.flat = flatten(to_dict(cfg))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["config"] = self.flat


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
