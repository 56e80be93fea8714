"""`reslab test`: a run's checkpoint on its test split, recorded as one more entry in summary.json's
`tests` (the top-level test/* keys stay the end of training's). A test measures the checkpoint as
it was trained: TESTABLE lists what it may change (where the data lives, how and on what it
computes, logging); anything else would measure another model or other data, so it is refused
before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import torch

from reslab import environment, tasks
from reslab.config.load import load
from reslab.config.schema import Config
from reslab.errors import UserError
from reslab.run.build import build_net_and_data, check_device
from reslab.run.stopping import lightning_interrupts
from reslab.run.trainer import prepare_process, test_trainer
from reslab.tracking import checkpoint, records
from reslab.tracking.rundir import RunDir
from reslab.tracking.wandb_identity import mode as wandb_mode
from reslab.tracking.wandb_run import test_to_wandb

# The keys a test may change (a prefix ending in "." covers a section); any other, and any key
# added later, is refused by default.
TESTABLE = (
    "data.root", "data.test_root", "data.download", "data.batch_size", "data.num_workers",
    "data.pipeline", "trainer.accelerator", "trainer.precision", "trainer.deterministic",
    "trainer.channels_last", "trainer.compile", "trainer.cudnn_benchmark",
    "trainer.progress_bar", "logger.",
)


def test(run: RunDir, overrides: list[str] = (), ckpt: Path | None = None) -> dict:
    """Evaluate `ckpt` (default: best.ckpt, else last.ckpt) and record it; returns the entry
    (checkpoint, global_step, overrides, metrics). Not while another process writes the run."""
    cfg = load([run.config], overrides)
    check_overrides(run, cfg)
    environment.check_launch(1, 1)  # one process
    wandb_mode(cfg)  # a WANDB_MODE that W&B would refuse, before the record is written
    check_device(cfg, torch.cuda.is_available())
    ckpt = run.checkpoint_to_read(ckpt)  # before the lock, which would create .lock
    with records.locked(run):
        summary = records.checked_summary(run)
        metrics, step = evaluate(cfg, run, ckpt)
        records.record_test(summary, ckpt, step, "reslab test", list(overrides), metrics)
        records.write_summary(run, summary)
    test_to_wandb(cfg, run, summary)  # the same W&B run, resumed by its id
    return summary["tests"][-1]


def evaluate(cfg: Config, run: RunDir, ckpt: Path) -> tuple[dict, int | None]:
    """The test metrics of checkpoint `ckpt` with `cfg` (one device, no loggers), and the step
    it was saved at; `reslab test` records them."""
    prepare_process()
    state = checkpoint.load(ckpt)
    built = build_net_and_data(cfg)
    task = tasks.build_task(cfg, built.net, built.datamodule)
    checkpoint.check_fits(ckpt, task)
    task.samples = run.samples
    task.load_state_dict(checkpoint.state_dict(state, ckpt))
    trainer = test_trainer(cfg, run, task)
    with lightning_interrupts():
        trainer.test(task, datamodule=built.datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    step = state.get("global_step")
    return metrics, step if isinstance(step, int) else None


def check_overrides(run: RunDir, cfg: Config) -> None:
    for key, old, new in records.config_changes(run, cfg, TESTABLE)[:1]:
        raise UserError(f"reslab test cannot change {key} ({old} -> {new}): the checkpoint is "
                        "measured as it was trained; a test may change only where the data "
                        "lives and how it computes (data.root, data.test_root, data.batch_size, "
                        "data.num_workers, trainer.accelerator, trainer.precision, ...)")
