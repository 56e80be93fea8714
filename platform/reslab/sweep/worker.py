"""One trial, inside a Ray worker: the one `run.train.fit` path in the trial's own run
directory, reporting each validation to Tune."""

from __future__ import annotations

import os
import time

import torch

from reslab.config.load import load
from reslab.errors import TrainingError
from reslab.run import train
from reslab.sweep.spec import Spec, sweep_dir, trial_name
from reslab.tracking.records import open_run, read_summary


def run_trial(config: dict, spec: Spec) -> None:
    """One trial, inside a Ray worker: the sweep's base config + this point, trained by
    train.fit in the trial's own run directory (resuming from its checkpoint on a retry or after
    `--resume`). Its summary.json gets `trial_s`: this attempt's time in the trial function up
    to its final record (the sweep's timing counts the rest as Ray's: start-up, workers,
    scheduling), and `trial_window`: when it began and ended (Unix time). They go into the one
    final write of the record: a second write after `completed` would change a finished trial's
    record after the sweep (or a resume) had read it as finished."""
    t0, began = time.perf_counter(), time.time()

    def timing() -> dict:
        return {"trial_s": round(time.perf_counter() - t0, 3),
                "trial_window": [round(began, 3), round(time.time(), 3)]}

    point = config["point"]
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        del os.environ[key]  # else Lightning picks SLURMEnvironment inside the trial
    cfg = spec.trial_cfg(point)
    run = sweep_dir(spec).trial(trial_name(point))
    if not run.config.is_file():
        open_run(cfg, run)
    elif failed_by_itself(run, cfg):
        raise TrainingError(f"{read_summary(run)['error']} (not retried: the same config "
                            "fails the same way)")
    torch.set_num_threads(max(1, int(spec.cpu)))
    report = TuneReport()
    summary = train.fit(cfg, resume=run, callbacks=[report], record=timing)
    if not report.reported:  # resumed at its last epoch: Tune still needs one result
        report.final(summary, spec.metric)


def failed_by_itself(run, cfg) -> bool:
    """The trial's run failed by its own numerics (a NaN loss) with this very config: a retry,
    Ray's or `--resume`'s, would fail again, and its record of why must stay as it is."""
    record = read_summary(run)
    return (record.get("status") == "failed" and
            str(record.get("error", "")).startswith(f"{TrainingError.__name__}:") and
            load([run.config]) == cfg)


def TuneReport():  # noqa: N802 - a Callback built lazily so `import reslab.sweep` needs no Ray
    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class _TuneReport(Callback):
        """Reports the epoch's metrics to Tune once per validation (ASHA decides on them)."""

        reported = False

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
            self.reported = True
            tune.report({**m, "epoch": trainer.current_epoch + 1,
                         "global_step": trainer.global_step})

        def final(self, summary: dict, metric: str) -> None:
            """The summary's metrics, for a trial that trained no further (a resume from its
            last checkpoint): Tune fails a trial that reports nothing."""
            m = {k: float(v) for k, v in summary.items()
                 if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)}
            tune.report({metric: float("nan"), **m, "epoch": summary.get("epoch", 0),
                         "global_step": summary.get("global_step", 0)})

    return _TuneReport()
