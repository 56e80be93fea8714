"""`reslab submit`: render the job script from the same config, write it into the run's slurm/
folder and sbatch it. Everything that can refuse happens before anything is written."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from reslab.config.load import derive, flatten, load, parse_overrides
from reslab.config.schema import Config, select
from reslab.errors import ConfigError, UserError
from reslab.run import build
from reslab.slurm.script import render, render_sweep
from reslab.sweep.spec import load_spec, sweep_dir
from reslab.sweep.trials import started
from reslab.tracking.records import open_run
from reslab.tracking.rundir import RunDir, new_run_id, run_path


def with_geometry(cfg: Config) -> Config:
    """trainer.num_nodes / trainer.devices / accelerator come from the slurm section alone (a
    laptop recipe's accelerator=cpu trains on the job's GPUs); an explicit trainer value that
    disagrees is refused before anything is queued, as is a GPU asked of a job without one."""
    s = cfg.slurm
    want = {"trainer.num_nodes": s.nodes, "trainer.devices": max(1, s.gpus_per_node)}
    for key, value in want.items():
        have = select(cfg, key)
        if have not in (1, value):
            raise ConfigError(f"{key}={have} conflicts with the slurm section ({key} = {value} "
                              f"from slurm.nodes={s.nodes}, slurm.gpus_per_node="
                              f"{s.gpus_per_node}); set slurm.* instead")
    if cfg.trainer.accelerator in ("gpu", "cuda") and not s.gpus_per_node:
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} but the job asks for no "
                          "GPU (slurm.gpus_per_node=0); set slurm.gpus_per_node, or use "
                          "trainer.accelerator=auto or cpu")
    return derive(cfg, {**want, "trainer.accelerator": "gpu" if s.gpus_per_node else "cpu"})


MAX_ARRAY = 1000  # tasks; SLURM's default MaxArraySize (1001) allows indices 0 to 1000


def parse_array(spec: str | None) -> tuple[str, list[str]] | None:
    """`--array seed=0,1,2` -> ("seed", ["0", "1", "2"]): each value given once (as the config
    reads it: 00 and 0 are one seed), none empty, at most MAX_ARRAY."""
    if spec is None:
        return None
    key, sep, values = spec.partition("=")
    items = values.split(",")
    if not sep or not key or "" in items:
        raise UserError(f"--array must look like KEY=V1,V2,... with no value empty (e.g. "
                        f"seed=0,1,2), got {spec!r}")
    if key.startswith("slurm.") or key in ("trainer.num_nodes", "trainer.devices",
                                           "trainer.accelerator"):
        raise UserError(f"--array cannot vary {key}: every task of an array has the same shape")
    if len(items) > MAX_ARRAY:
        raise UserError(f"--array gives {len(items)} values; at most {MAX_ARRAY} (SLURM's "
                        "default MaxArraySize): submit several arrays, or a sweep")
    read = [flatten(parse_overrides([f"{key}={v}"])).get(key) for v in items]
    for i, value in enumerate(read):
        if value in read[:i]:
            raise UserError(f"--array {spec} gives {key}={items[i]} and {key}="
                            f"{items[read.index(value)]}, the same value: each task would train "
                            "the same run; give each value once")
    return key, items


def submit(recipes: list[str], overrides: list[str], dry_run: bool = False,
           array: str | None = None) -> dict:
    """Render, write into the run's slurm/ folder and sbatch; nothing is created on dry runs."""
    spec = parse_array(array)
    if spec and len(spec[1]) == 1:  # one task is a plain job (SLURM names no array's %a log)
        overrides, spec = [*overrides, f"{spec[0]}={spec[1][0]}"], None
    variants = [[f"{spec[0]}={v}"] for v in spec[1]] if spec else [[]]
    cfgs = [with_geometry(load(recipes, overrides + extra)) for extra in variants]
    for cfg in cfgs:
        build.check(cfg)  # a missing dataset or weights that do not fit: refused before queueing
    runs = [RunDir(run_path(c, new_run_id())) for c in cfgs]
    if spec:
        base = runs[0].path.parent / f"array-{runs[0].run_id}"
        log = base / "slurm-%A_%a.out"
    else:
        base, log = runs[0].slurm, runs[0].slurm / "slurm-%j.out"
    script = render(cfgs[0], runs, log)
    if dry_run:
        return {"script": script, "run_dirs": [str(r.path) for r in runs]}
    with undone_on_failure([r.path for r in runs] + [base] * bool(spec)):
        for cfg, run in zip(cfgs, runs):
            open_run(cfg, run)
        base.mkdir(parents=True, exist_ok=True)
        jid = sbatch(script, base)
    return queued(jid, script, runs, log, array=bool(spec))


def submit_sweep(spec_path: str, recipes: list[str], overrides: list[str],
                 dry_run: bool = False) -> dict:
    spec = load_spec(spec_path, overrides, recipes)
    cfg = derive(spec.base_cfg(), {"run.name": spec.name})  # the job's name
    sweep = sweep_dir(spec)
    if started(sweep) or os.path.lexists(sweep.slurm):
        raise UserError(f"sweep directory {sweep.path} already holds a sweep (or a submitted "
                        f"one); the job's first attempt would be refused there: continue it "
                        f"with `reslab sweep {shlex.quote(spec_path)} --resume`, or give the "
                        "sweep another name")
    items = [str(Path(r).resolve()) for r in recipes] + overrides
    script = render_sweep(cfg, Path(spec_path).resolve(), items, sweep)
    if dry_run:
        return {"script": script, "run_dirs": [str(sweep.path)]}
    with undone_on_failure([sweep.slurm]):
        sweep.slurm.mkdir(parents=True)
        jid = sbatch(script, sweep.slurm)
    return queued(jid, script, [RunDir(sweep.path)], sweep.slurm / "slurm-%j.out", array=False)


@contextlib.contextmanager
def undone_on_failure(paths: list[Path]):
    """The directories a submission creates for `paths` (with their parents that did not exist)
    go again if it fails before its job is queued (sbatch refuses it, an interrupt): a run
    directory whose job never queued would be listed by `reslab status`."""
    created = {outermost_missing(p) for p in paths if not os.path.lexists(p)}
    try:
        yield
    except BaseException:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise


def outermost_missing(path: Path) -> Path:
    while not os.path.lexists(path.parent):
        path = path.parent
    return path


def sbatch(script: str, folder: Path) -> str:
    """job.sbatch written into `folder` and queued; the job id (or one sentence: sbatch's)."""
    if not shutil.which("sbatch"):
        raise UserError("sbatch is not on PATH: run this on a SLURM login node (or "
                        "`slurm/local-cluster.sh up` for the local cluster)")
    (folder / "job.sbatch").write_text(script)
    out = subprocess.run(["sbatch", "--parsable", str(folder / "job.sbatch")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        said = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
        raise UserError(f"sbatch refused the job: {said[-1]}")
    return out.stdout.strip().split(";")[0]


def queued(jid: str, script: str, runs: list[RunDir], log: Path, array: bool) -> dict:
    """Each run directory records its job id and log; what the command prints."""
    for i, run in enumerate(runs):
        run.record_job(f"{jid}_{i}" if array else jid, expand(log, jid, i))
    return {"job_id": jid, "run_dirs": [str(r.path) for r in runs],
            "log": str(log.parent / log.name.replace("%A", jid).replace("%j", jid)),
            "script": script}


def expand(log: Path, jid: str, task: int) -> str:
    """The log path of a task: the file name's %A/%a/%j, as SLURM expands them."""
    name = log.name.replace("%A", jid).replace("%a", str(task)).replace("%j", jid)
    return str(log.parent / name)
