"""One run's story: build it from the config (build), train it (train: the one training path;
trainer: the Trainer; callbacks, progress; stopping: signals, last.ckpt, SLURM requeue;
resuming), start from weights (weights), test it (evaluation) and export its net (export).
What the run leaves on disk and in W&B is reslab.tracking's."""

from __future__ import annotations

from reslab.run.evaluation import test
from reslab.run.train import fit

__all__ = ["fit", "test"]
