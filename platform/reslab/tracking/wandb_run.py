"""Everything W&B about a run, in one place: what the run is called in W&B and which settings
win (identity), the logger's life (start, metrics, the summary, the end), its checkpoints as
model artifacts with a fine-tune's lineage, and `reslab test`'s summary into the same W&B run.
W&B never decides how a run ends: its failures are warnings (`guarded`). Private W&B and
Lightning APIs go through reslab.compat; `wandb` itself is imported only where a run needs it.

Identity. `init_args(cfg, run)` is the keyword arguments of `wandb.init`, as plain data.
Precedence for mode, project and entity: the recipe or command line (`logger.wandb.*`), then
W&B's own variables (`WANDB_MODE`, `WANDB_PROJECT`, `WANDB_ENTITY`, `WANDB_DIR`), then reslab's
default (offline, project "reslab", files in the run directory). An argument passed to
`wandb.init` beats W&B's variables, so only what the user set (or reslab's default where W&B
has none) is passed.

Artifacts (`logger.wandb.log_model`). Each logged checkpoint is first hard-linked (copied across
file systems) into the W&B run's own folder (`<run dir>/wandb/<offline-run-...>/artifacts/`)
and added by reference: offline, the artifact sits in the run files and uploads on
`wandb sync`, and a later attempt that rewrites best.ckpt cannot change what an earlier attempt
logged. The artifact is `model-<W&B run id>`, one file `model.ckpt`: the same bytes give the
same digest, which is how a fine-tune's reference matches the pretraining run's version, so
W&B's lineage graph shows pretrain -> fine-tune."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from reslab import data, environment, models
from reslab.compat import (
    log_artifact_used_after_commit,
    wandb_init_args,
    wandb_run_if_started,
    wandb_settings,
)
from reslab.config.load import flatten, to_dict
from reslab.config.schema import Config
from reslab.errors import UserError, Warned
from reslab.metrics import BY_TASK
from reslab.tracking import checkpoint
from reslab.tracking.records import is_torchvision_name, weights_file
from reslab.tracking.redaction import redact
from reslab.tracking.rundir import RunDir, find_run

# model.* keys every model has; the others apply only to models whose builder takes them.
MODEL_COMMON = ("name", "weights", "freeze")
# Config keys that apply to some runs only: (key prefix, does it apply to this run?).
ONLY_FOR = (
    (("data.scale", "data.patch_size", "data.channels", "data.test_root", "optim.loss"),
     lambda c, task: task == "super_resolution"),
    (("optim.label_smoothing", "data.classes"), lambda c, task: task == "classification"),
    (("data.num_classes", "data.shape"), lambda c, task: c.data.name == "synthetic"),
    (("data.size",), lambda c, task: c.data.name == "synthetic" or task == "super_resolution"),
    (("data.image_size", "data.mean", "data.std", "data.resize_size"),
     lambda c, task: c.data.name == "imagefolder"),
    (("optim.warmup_lr", "optim.warmup_until_err"), lambda c, task: c.optim.warmup_lr is not None),
    (("optim.milestones", "optim.gamma"), lambda c, task: str(c.optim.schedule) == "paper"),
)
ENTRY = "model.ckpt"  # the one file of a model artifact


# --- the logger's life: start, log, close, finish ---------------------------------------------


class ReslabWandb(WandbLogger):
    """Lightning's W&B logger with reslab's checkpoints as artifacts (log_model=all: each new
    best.ckpt as it is written; the end-of-run ones in `close`)."""

    def __init__(self, cfg: Config, run: RunDir, **kwargs):
        super().__init__(log_model=False, **kwargs)
        wandb_init_args(self).pop("anonymous", None)  # Lightning's default; W&B warns it is unused
        self.cfg, self.run, self.lost = cfg, run, False

    def log_metrics(self, metrics, step=None) -> None:
        """W&B's service can die mid-run (SLURM signals every process of a cancelled job step,
        and a log between the signal and the step boundary killed rank 0, so DDP never stopped
        cleanly): a failed log is one warning, and W&B sits out the rest of the run."""
        if self.lost:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as e:  # noqa: BLE001 - W&B never decides how a run ends
            self.lost = True
            warnings.warn(f"W&B stopped logging ({type(e).__name__}: {str(e)[:200]}); "
                          "metrics.csv and summary.json are complete", Warned, stacklevel=2)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if log_model(self.cfg) != "all" or \
                not checkpoint_callback.best_model_path or wandb_run_if_started(self) is None:
            return
        score = checkpoint_callback.best_model_score
        guarded(log_checkpoint, self.experiment, self.cfg, self.run,
                checkpoint_callback.best_model_path, ["best"],
                {"score": None if score is None else float(score)})

    def close(self, summary: dict) -> None:
        """The summary (every key of summary.json) and the end-of-run checkpoints."""
        if wandb_run_if_started(self) is None or self.lost:
            return
        guarded(self.experiment.summary.update, wandb_summary(summary, self.cfg))
        if summary.get("status") != "failed":
            guarded(log_end_of_run, self.experiment, self.cfg, self.run, summary)


def wandb_logger(cfg: Config, run: RunDir) -> ReslabWandb | None:
    """The W&B logger, or None when W&B is off (recipe or WANDB_MODE=disabled: no W&B files)
    or cannot start — training never fails because of W&B."""
    if mode(cfg) == "disabled":
        return None
    quiet_wandb()
    try:
        args = init_args(cfg, run)
        logger = ReslabWandb(cfg, run, save_dir=args.pop("dir"), settings=settings(cfg), **args)
        experiment = logger.experiment  # start now: a failure is caught here, not mid-training
        define_metrics(experiment, cfg)
        guarded(use_pretrained, experiment, cfg)
        return logger
    except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
        warnings.warn(f"W&B could not start ({type(e).__name__}: {str(e)[:200]}); "
                      "continuing with metrics.csv only", Warned, stacklevel=2)
        finish_wandb()
        return None


def settings(cfg: Config):
    """System metrics and console capture follow the config (both on by default)."""
    w = cfg.logger.wandb
    return wandb_settings(w.system_metrics, save_code=False, console="auto" if w.console else "off",
                          init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)))


def define_metrics(experiment, cfg: Config) -> None:
    """Every metric against the global step (Lightning defines that), and the monitored metric's
    best as well as its last value in the summary (val/err min, val/psnr max)."""
    metric, direction = task_metrics(cfg).monitor
    experiment.define_metric(metric, step_metric="trainer/global_step", summary=f"{direction},last")


def wandb_summary(summary: dict, cfg: Config) -> dict:
    """summary.json as the W&B summary: the same keys and values, except the monitored metric,
    which W&B keeps as {min|max: best, last: value} (define_metric) — its `last` is
    summary.json's value and its best is summary.json's `<metric>_best`."""
    metric, direction = task_metrics(cfg).monitor
    out = redact(summary)
    if metric in out:
        out[metric] = {direction: summary.get(f"{metric}_best", summary[metric]),
                       "last": summary[metric]}
    return out


def finish_wandb(summary: dict | None = None, loggers: list = ()) -> None:
    """Close the W&B run with the run's summary; a W&B failure here (its service killed with the
    job) is a warning."""
    if "wandb" not in sys.modules:
        return
    import wandb

    for logger in loggers:
        if isinstance(logger, ReslabWandb) and summary is not None:
            logger.close(summary)
    if wandb.run is not None:
        guarded(wandb.finish)
    # finish() returns before W&B's service has written the run's last records; teardown waits
    # for them, so the run directory is complete (syncable) when reslab returns. It also drops
    # the settings W&B keeps for the whole process (mode, server) — also after a run that could
    # not start — so the next run in this process (a sweep's reused worker) starts from its own.
    guarded(wandb.teardown)


def test_to_wandb(cfg: Config, run: RunDir, summary: dict) -> None:
    """`reslab test`: the run's summary, test metrics included, into the same W&B run (resumed
    by its id; offline: a second offline-run folder with the same id, merged on sync)."""
    if mode(cfg) == "disabled":
        return
    quiet_wandb()
    try:
        import wandb

        args = {k: v for k, v in init_args(cfg, run).items()
                if k in ("id", "resume", "dir", "project", "entity", "mode")}
        experiment = wandb.init(**args, settings=settings(cfg))
        experiment.summary.update(wandb_summary(summary, cfg))
    except Exception as e:  # noqa: BLE001 - the test result is in summary.json regardless
        warnings.warn(f"W&B could not record the test ({type(e).__name__}: {str(e)[:200]}); "
                      "summary.json holds it", Warned, stacklevel=2)
    finish_wandb()


def guarded(fn, *args) -> Any:
    """Call a W&B step; a failure is a warning (W&B never decides how a run ends)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B: {getattr(fn, '__name__', fn)} failed ({type(e).__name__}: "
                      f"{str(e)[:200]}); metrics.csv and summary.json are complete", Warned, stacklevel=2)
        return None


def quiet_wandb() -> None:
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")


# --- identity: names, ids, groups, tags, settings, config columns (plain data) ----------------


def mode(cfg: Config) -> str:
    """offline | online | disabled | shared: the recipe's, else WANDB_MODE, else offline."""
    m = cfg.logger.wandb.mode
    return environment.wandb_mode(None if m is None else str(m))


def init_args(cfg: Config, run: RunDir) -> dict[str, Any]:
    """`wandb.init` keyword arguments for `run`: identity, settings that won, flat config."""
    w = cfg.logger.wandb
    args: dict[str, Any] = {"id": run_id(run), "resume": "allow",
                            "dir": os.environ.get("WANDB_DIR") or str(run.path),
                            "project": w.project or os.environ.get("WANDB_PROJECT") or "reslab",
                            **identity(cfg, run), "config": columns(cfg, run)}
    if w.mode is not None or not os.environ.get("WANDB_MODE"):
        args["mode"] = mode(cfg)
    if w.entity:
        args["entity"] = w.entity
    return args


def run_id(run: RunDir) -> str:
    """Stable across attempts (requeues, retries, `reslab test`) and unique per run directory:
    W&B ids allow letters, digits, '-' and '_' only, so a trial's 'depth=56,shortcut=none' gets
    a hash."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run.run_id):
        return run.run_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", run.run_id).strip("-")[:48]
    return f"{safe}-{hashlib.sha1(str(run.path).encode()).hexdigest()[:10]}"


def identity(cfg: Config, run: RunDir) -> dict[str, Any]:
    """name, group, tags and job_type; the recipe's values win over the derived ones."""
    w, m = cfg.logger.wandb, model_facts(cfg)
    array = array_task(run)
    name = label(cfg, m) + f"-seed{cfg.seed}" + (f"-task{array[1]}" if array else "")
    group = cfg.run.name if not array else f"{cfg.run.name}-array{array[0]}"
    tags = [m["family"], f"depth{m['depth']}", shortcut_tag(m["shortcut"]), cfg.data.name,
            m["task"], *(["fine-tune"] if fine_tune(cfg) else [])]
    job_type = "fine-tune" if fine_tune(cfg) else "array-task" if array else "train"
    return {"name": w.name or name, "group": w.group or group,
            "tags": [t[:64] for t in dict.fromkeys([*tags, *w.tags])],  # W&B: 64 chars
            "job_type": w.job_type or job_type}


def model_facts(cfg: Config) -> dict[str, Any]:
    """The model's family, task, depth and shortcut, a preset's own values filled in."""
    info = models.info(cfg.model.name)
    return {"family": info.family, "task": info.task,
            "depth": cfg.model.depth or info.depth or info.default_depth,
            "shortcut": cfg.model.shortcut or info.shortcut}


def label(cfg: Config, m: dict[str, Any]) -> str:
    """What the network is, as the paper writes it: resnet56-A, plain56, vdsr20-x2."""
    mc = cfg.model
    if m["task"] == "super_resolution":
        out = f"{m['family']}{m['depth']}" + ("-noskip" if m["shortcut"] == "none" else "")
        out += f"-x{cfg.data.scale}"
    else:
        out = (f"plain{m['depth']}" if m["shortcut"] == "none"
               else f"resnet{m['depth']}-{m['shortcut']}")
        out += "-bottleneck" if mc.block == "bottleneck" else ""
        out += "-preact" if mc.preact else ""
    out += f"-w{mc.width:g}" if mc.width != 1 else ""
    return out + ("-ft" if fine_tune(cfg) else "")


def shortcut_tag(shortcut: str | None) -> str:
    return "plain" if shortcut == "none" else f"shortcut-{shortcut}"


def task_metrics(cfg: Config):
    """The run's task's metric keys (reslab.metrics): what W&B's summary and artifacts follow."""
    return BY_TASK[data.task_of(cfg.data.name)]


def log_model(cfg: Config) -> str:
    """logger.wandb.log_model as one of false | best | last | all."""
    return str(cfg.logger.wandb.log_model).lower()


def fine_tune(cfg: Config) -> bool:
    return str(cfg.model.weights) != "none"


def array_task(run: RunDir) -> tuple[str, str] | None:
    """(array job id, task index) of a SLURM array task: from the job id recorded at submission
    (so `reslab test` later finds the same group), else from the job's environment."""
    jid = run.job_id()
    if jid and "_" in jid:
        job, task = jid.split("_", 1)
        return job, task
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return (job, task) if job and task else None


def columns(cfg: Config, run: RunDir) -> dict[str, Any]:
    """The flat config (`model.depth`), secrets redacted, without the keys that do not apply
    to this run: other models' options, other tasks' data keys, slurm.* outside SLURM."""
    flat = flatten(redact(to_dict(cfg)))
    info = models.info(cfg.model.name)
    task = data.task_of(cfg.data.name)
    in_slurm = environment.in_slurm_step() or run.job_id() is not None
    drop = {k for k in flat if k.startswith("slurm.") and not in_slurm}
    drop |= {k for k in flat if k.startswith("model.")
             and k.split(".")[1] not in (*MODEL_COMMON, *info.options)}
    for keys, applies in ONLY_FOR:
        if not applies(cfg, task):
            drop |= {k for k in flat if k.startswith(keys)}
    return {k: v for k, v in flat.items() if k not in drop}


# --- checkpoints as model artifacts; a fine-tune's lineage ------------------------------------


def artifact_name(wandb_run_id: str) -> str:
    return f"model-{wandb_run_id}"


def log_end_of_run(experiment, cfg: Config, run: RunDir, summary: dict) -> None:
    """best: best.ckpt (aliases best, latest); last and all: last.ckpt (aliases last, latest),
    with best.ckpt too for `last`; false: nothing."""
    how = log_model(cfg)
    metric = task_metrics(cfg).monitor[0]
    score = summary.get(f"{metric}_best")
    if how in ("best", "last") and run.best_ckpt.is_file():
        log_checkpoint(experiment, cfg, run, run.best_ckpt, ["best"], {"score": score})
    if how in ("last", "all") and run.last_ckpt.is_file():
        log_checkpoint(experiment, cfg, run, run.last_ckpt, ["last"],
                       {"score": summary.get(metric)})


def log_checkpoint(experiment, cfg: Config, run: RunDir, ckpt: str | Path, aliases: list[str],
                   meta: dict) -> None:
    """One version of the run's model artifact: the checkpoint, its aliases (+ latest) and
    metadata (the monitored metric and its score, step, epoch, file, the run's config)."""
    import wandb

    ckpt = Path(ckpt)
    state = checkpoint.load(ckpt, mmap=True)
    step, epoch = state.get("global_step"), state.get("epoch")
    snap = snapshot(experiment, ckpt, f"{ckpt.stem}-step{step}.ckpt")
    metric = task_metrics(cfg).monitor[0]
    art = wandb.Artifact(artifact_name(experiment.id), type="model", metadata={
        "metric": metric, **meta, "step": step, "epoch": epoch, "file": ckpt.name,
        "run_dir": str(run.path), "config": columns(cfg, run)})
    art.add_file(str(snap), name=ENTRY, policy="immutable")
    experiment.log_artifact(art, aliases=[*aliases, "latest"])


def snapshot(experiment, ckpt: Path, name: str) -> Path:
    """The checkpoint's bytes as they are now, in the W&B run's folder."""
    folder = Path(experiment.dir).parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    dest.unlink(missing_ok=True)
    try:
        os.link(ckpt, dest)
    except OSError:
        shutil.copy2(ckpt, dest)
    return dest


def use_pretrained(experiment, cfg: Config) -> None:
    """A fine-tune from a reslab run records that run's model artifact as its input: the same
    checkpoint bytes under the same artifact name, so W&B matches the pretraining version.
    torchvision weights and plain files outside a run directory have no artifact."""
    spec = str(cfg.model.weights)
    if spec == "none" or is_torchvision_name(spec):
        return
    ckpt = weights_file(spec)
    try:
        source = find_run(ckpt)
    except UserError:  # a plain file, not a reslab run's checkpoint
        return
    import wandb

    art = wandb.Artifact(artifact_name(run_id(source)), type="model")
    art.add_file(str(ckpt), name=ENTRY, policy="immutable")
    if experiment.offline:
        log_artifact_used_after_commit(experiment, art)  # use_artifact, offline
    else:
        experiment.use_artifact(art)
