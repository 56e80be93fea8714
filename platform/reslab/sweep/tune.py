"""Run a sweep with Ray Tune: a private local Ray (or the cluster at --address), one trial per
point, each calling the one `run.train.fit` path in its own run directory."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from reslab import environment
from reslab.errors import UserError
from reslab.run.build import check_device
from reslab.sweep.check import check_resources
from reslab.sweep.definition import check_same_sweep, write_definition
from reslab.sweep.results import format_timing, timing, write_results, write_timing
from reslab.sweep.session import DriverSignals, check_reachable, driver_signals, start_ray
from reslab.sweep.spec import Spec, sweep_dir, trial_name
from reslab.sweep.trials import all_trials, check_places, completed, started
from reslab.sweep.worker import run_trial
from reslab.tracking.records import check_free, locked, read_summary, write_summary
from reslab.tracking.rundir import SweepDir


def run(spec: Spec, resume: bool = False, address: str | None = None,
        cpus: int | None = None) -> list[dict]:
    """Run (or continue) the sweep; returns the sweep.csv rows. The trials are rebuilt from the
    spec and the trial directories (sweep/trials.py): a resume is a fresh Tuner over the trials
    that have not completed, each continuing from its own checkpoint. Ray Tune's saved state is
    pickle and is never restored. Everything is checked before anything is written (prepare);
    then the driver holds the sweep directory's lock until Ray is gone (a second driver is
    refused)."""
    out, points, todo = prepare(spec, resume, address, cpus)
    out.path.mkdir(parents=True, exist_ok=True)
    with locked(out):
        check_state(out, resume)  # again, holding the lock: another driver may have run meanwhile
        write_definition(spec, out)
        if resume:
            print(f"[sweep] resuming: {len(points) - len(todo)} of {len(points)} trials "
                  f"completed, {len(todo)} to run", flush=True)
        if not todo:
            return write_results(spec, out, points, {})
        names = [trial_name(p) for p in todo]
        before = {n: read_summary(out.trial(n)).get("wall_s") or 0.0 for n in names}
        t0, began = time.perf_counter(), time.time()
        results, slots = run_tune(spec, out, todo, address, cpus, len(points) - len(todo))
        t = timing(out, names, before, time.perf_counter() - t0, slots, began)
        rows = write_results(spec, out, points, results)
        write_timing(out, t)
    print(format_timing(t), flush=True)
    return rows


def prepare(spec: Spec, resume: bool, address: str | None,
            cpus: int | None) -> tuple[SweepDir, list[dict], list[dict]]:
    """What a run checks before it writes anything, and a dry run too: the sweep directory's
    state, the resources, every trial's place and config (random draws too), and on resume that
    the spec is the sweep's own. Returns the sweep directory, every trial's point and those
    still to run."""
    environment.check_stray_ranks()  # the trials inherit the environment
    out = sweep_dir(spec)
    check_state(out, resume)
    check_free(out)  # another driver runs it (the run takes the lock; a dry run only looks)
    if address is None:
        check_local_resources(spec, cpus)
    else:
        check_reachable(address)
    points = all_trials(spec, out)
    check_places(out, points)
    todo = [p for p in points if not completed(out, p)]
    gpus, where = trial_gpus(spec, address)
    for point in todo:
        check_device(spec.trial_cfg(point), gpus, where)
    check_same_sweep(spec, out)
    return out, points, todo


def trial_gpus(spec: Spec, address: str | None) -> tuple[bool | None, str]:
    """Whether a trial trains where there is a CUDA GPU (None: a cluster's, not known here), and
    that place in words."""
    if spec.gpu == 0:
        return False, "a trial (resources_per_trial.gpu is 0)"
    return (torch.cuda.is_available(), "this machine") if address is None else (None, "")


def check_state(out: SweepDir, resume: bool) -> None:
    """`--resume` needs a sweep to continue; a new sweep needs a directory that holds none."""
    if resume and not started(out):
        raise UserError(f"nothing to resume: {out.path} holds no sweep (no trial directories, "
                        "sweep.csv or tune/)")
    if not resume and started(out):
        raise UserError(f"sweep directory {out.path} already holds a sweep: pass --resume to "
                        "continue it, or set name/run.root to start a new one")


def run_tune(spec: Spec, out: SweepDir, todo: list[dict], address: str | None,
             cpus: int | None, done: int) -> tuple[dict, int]:
    """A fresh Tuner over `todo` (one grid axis, `point`, holding each trial's whole point);
    returns Tune's result per trial name, and how many trials the resources let run at once.
    Ctrl-C or SIGTERM unwinds the driver (Tune's own handlers, which would end the running trials
    as if the scheduler had stopped them, are put back to the driver's); Ray goes down with its
    workers, and each trial they left behind is recorded `interrupted` (settle)."""
    import ray
    from ray import tune

    scheduler = make_scheduler(spec)
    tmp = start_ray(address, cpus)
    try:
        if address:
            check_resources(spec, [n["Resources"] for n in ray.nodes() if n["Alive"]],
                            f"the Ray cluster at {address}")
        empty_dir(out.tune)  # Tune's working files: rewritten on every run, never read back
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec),
                                        {"cpu": spec.cpu, "gpu": spec.gpu})
        tuner = tune.Tuner(trainable, param_space={"point": tune.grid_search(todo)},
                           tune_config=tune_config(spec, scheduler),
                           run_config=run_config(spec, out, done))
        slots = concurrency(spec, ray.cluster_resources())
        grid = tuner.fit()
    finally:
        with driver_signals():  # ray.shutdown leaves SIGTERM to the default action
            ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        settle(out, todo, getattr(scheduler, "stopped", set()))
    return {trial_name(r.config["point"]): r for r in grid}, slots


def settle(out: SweepDir, todo: list[dict], pruned: set[str]) -> None:
    """After Ray is gone: a trial of this run that records `running` (its worker went down with
    the driver) or `stopped` without the scheduler having stopped it (Tune ends the running trials
    that way when it stops early) did not finish: it is recorded `interrupted`, and a resume
    continues it from its checkpoint. Each is rewritten holding its lock, once its worker has
    let go of it."""
    for name in (trial_name(p) for p in todo):
        run = out.trial(name)
        if name in pruned or read_summary(run).get("status") not in ("running", "stopped"):
            continue
        try:
            with locked(run, wait=15):
                write_summary(run, {**read_summary(run), "status": "interrupted",
                                    "error": "the sweep ended before this trial did; "
                                             "`reslab sweep SPEC --resume` continues it"})
        except UserError:  # its worker still holds it: it stays `running`, which resumes too
            pass


def check_local_resources(spec: Spec, cpus: int | None) -> None:
    """The private local Ray has `cpus` (else every CPU) and this machine's GPUs."""
    check_resources(spec, [{"CPU": cpus or os.cpu_count(), "GPU": torch.cuda.device_count()}],
                    "this machine's Ray")


def concurrency(spec: Spec, resources: dict) -> int:
    """Trials that fit at once: the CPUs (and GPUs) over each trial's share, capped by
    max_concurrent."""
    fits = [int(resources.get("CPU", 1) // spec.cpu)]
    if spec.gpu:
        fits.append(int(resources.get("GPU", 0) // spec.gpu))
    if spec.max_concurrent:
        fits.append(spec.max_concurrent)
    return max(1, min(fits))


def empty_dir(path: Path) -> None:
    """`path` as an empty directory, whatever was there (nothing in it is opened)."""
    if path.is_symlink() or path.exists() and not path.is_dir():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    for p in path.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def make_scheduler(spec: Spec):
    """ASHA (keeping the names of the trials it stopped early: those are finished) or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.name != "asha":
        return FIFOScheduler()

    class Asha(ASHAScheduler):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == self.STOP:
                self.stopped.add(trial_name(trial.config["point"]))
            return decision

    # The epoch, not Tune's iteration count: a resumed trial continues its epochs.
    return Asha(time_attr="epoch", grace_period=s.grace_period,
                reduction_factor=s.reduction_factor,
                max_t=int(spec.base_cfg().trainer.max_epochs))


def tune_config(spec: Spec, scheduler):
    from ray import tune

    # reuse_actors: the next trial runs in the worker the last one finished in, so torch,
    # Lightning and reslab are imported once per slot, not once per trial (on the 2-core build
    # machine a fresh worker cost ~12 s between trials: +57 % on the degradation sweep).
    return tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                           num_samples=1, max_concurrent_trials=spec.max_concurrent or None,
                           reuse_actors=True)


def run_config(spec: Spec, out: SweepDir, done: int = 0):
    from ray import tune

    return tune.RunConfig(storage_path=str(out.tune.parent), name=out.tune.name, verbose=0,
                          failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          callbacks=[Progress(done), DriverSignals()])


def Progress(done: int = 0):  # noqa: N802 - see TuneReport
    from ray.tune import Callback

    class _Progress(Callback):
        """One line whenever a trial starts, ends or fails: done (counting the trials a resumed
        sweep did not rerun) / running / failed."""

        def __init__(self):
            self.state: dict[str, str] = {}

        def _show(self, trial, state: str) -> None:
            self.state[trial.trial_id] = state
            counts = {s: list(self.state.values()).count(s) for s in ("done", "running", "failed")}
            print(f"[sweep] {trial_name(trial.config['point']):<40} {state:<8} | "
                  f"{counts['done'] + done} done, {counts['running']} running, "
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
