"""Run a sweep with Ray Tune: a private local Ray (or the cluster at --address), one trial per
point, each calling the one `train.fit` path in its own run directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from reslab import train
from reslab.errors import UserError
from reslab.rundir import open_run
from reslab.sweep.results import write_results
from reslab.sweep.spec import Spec, sweep_dir, trial_name


def run(spec: Spec, resume: bool = False, address: str | None = None,
        cpus: int | None = None) -> list[dict]:
    """Run (or continue) the sweep; returns the sweep.csv rows."""
    import ray
    from ray import tune

    out = sweep_dir(spec)
    state = out.tune
    if resume and not state.is_dir():
        raise UserError(f"nothing to resume: {state} does not exist")
    if not resume and state.exists():
        raise UserError(f"sweep directory {out.path} already holds a sweep: pass --resume to "
                        "continue it, or set name/run.root to start a new one")
    tmp = start_ray(address, cpus)
    try:
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec),
                                        {"cpu": spec.cpu, "gpu": spec.gpu})
        if resume:
            tuner = restore(state, trainable)
        else:
            out.path.mkdir(parents=True, exist_ok=True)
            tuner = tune.Tuner(trainable, param_space=param_space(spec),
                               tune_config=tune_config(spec), run_config=run_config(spec, out.path))
        results = tuner.fit()
    finally:
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return write_results(spec, out, results)


def restore(state: Path, trainable):
    """Tune's own restore, with a damaged state turned into a sentence (nothing is written)."""
    from ray import tune

    try:
        return tune.Tuner.restore(str(state), trainable, resume_unfinished=True,
                                  resume_errored=True)
    except Exception as e:  # noqa: BLE001 - Ray raises many types for a bad state
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot resume the sweep: Ray Tune's state in {state} is unreadable "
                        f"({first}); the finished trials' directories and sweep.csv are "
                        "untouched") from None


def start_ray(address: str | None, cpus: int | None) -> Path | None:
    """A private local Ray (own temp dir, localhost only, never someone else's instance), or the
    cluster at `address`. Returns the private instance's temp dir."""
    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices; errors still show
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Save Tune's experiment state often: it is what `--resume` restores after a killed driver.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if address:
        ray.init(address=address, log_to_driver=False)
        return None
    tmp = Path(tempfile.gettempdir()) / f"reslab-ray-{os.getuid()}-{os.getpid()}"
    ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
             _temp_dir=str(tmp), _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    return tmp


def param_space(spec: Spec) -> dict:
    from ray import tune

    space: dict[str, Any] = {}
    for key, value in spec.space.items():
        if isinstance(value, list):
            space[key] = tune.grid_search(value)
        else:
            (kind, args), = value.items()
            space[key] = {"choice": tune.choice, "uniform": lambda a: tune.uniform(*a),
                          "loguniform": lambda a: tune.loguniform(*a),
                          "randint": lambda a: tune.randint(*a)}[kind](args)
    space["seed"] = tune.grid_search(spec.seeds)
    if spec.search == "random" and spec.num_samples > 1:
        space["_sample"] = tune.grid_search(list(range(spec.num_samples)))
    return space


def tune_config(spec: Spec):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.name == "asha":
        sched = ASHAScheduler(time_attr="training_iteration", grace_period=s.grace_period,
                              reduction_factor=s.reduction_factor,
                              max_t=int(spec.base_cfg().trainer.max_epochs))
    else:
        sched = FIFOScheduler()
    return tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=sched, num_samples=1,
                           max_concurrent_trials=spec.max_concurrent or None)


def run_config(spec: Spec, out: Path):
    from ray import tune

    return tune.RunConfig(storage_path=str(out), name="tune", verbose=0,
                          failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          callbacks=[Progress()])


def run_trial(point: dict, spec: Spec) -> None:
    """One trial, inside a Ray worker: the sweep's base config + this point, trained by
    train.fit in the trial's own run directory (resuming from its checkpoint on a retry)."""
    import torch

    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        del os.environ[key]  # else Lightning picks SLURMEnvironment inside the trial
    torch.set_num_threads(max(1, int(spec.cpu)))
    cfg = spec.trial_cfg(point)
    run = sweep_dir(spec).trial(trial_name(point))
    if not run.config.is_file():
        open_run(cfg, run.run_id)
    train.fit(cfg, resume=run, callbacks=[TuneReport()])


def TuneReport():  # noqa: N802 - a Callback built lazily so `import reslab.sweep` needs no Ray
    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class _TuneReport(Callback):
        """Reports the epoch's metrics to Tune once per validation (ASHA decides on them)."""

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
            tune.report({**m, "epoch": trainer.current_epoch + 1,
                         "global_step": trainer.global_step})

    return _TuneReport()


def Progress():  # noqa: N802 - see TuneReport
    from ray.tune import Callback

    class _Progress(Callback):
        """One line whenever a trial starts, ends or fails: done / running / failed / pending."""

        def __init__(self):
            self.state: dict[str, str] = {}

        def _show(self, trial, state: str) -> None:
            self.state[trial.trial_id] = state
            counts = {s: list(self.state.values()).count(s) for s in ("done", "running", "failed")}
            print(f"[sweep] {trial_name(trial.config):<40} {state:<8} | "
                  f"{counts['done']} done, {counts['running']} running, "
                  f"{counts['failed']} failed", flush=True)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._show(trial, "running")

        def on_trial_restore(self, iteration, trials, trial, **info):
            self._show(trial, "running")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._show(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._show(trial, "failed")

    return _Progress()
