"""What a run is called in W&B and which settings win, as plain data (no W&B import): the
keyword arguments of `wandb.init` (`init_args`), the run's id, name, group, tags and job type,
and its config as columns without the keys that do not apply to it.

Precedence for mode, project and entity: the recipe or command line (`logger.wandb.*`), then
W&B's own variables (`WANDB_MODE`, `WANDB_PROJECT`, `WANDB_ENTITY`, `WANDB_DIR`), then reslab's
default (offline, project "reslab", files in the run directory). An argument passed to
`wandb.init` beats W&B's variables, so only what the user set (or reslab's default where W&B
has none) is passed."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from reslab import data, environment, models
from reslab.config.load import flatten, to_dict
from reslab.config.schema import Config
from reslab.metrics import BY_TASK
from reslab.tracking.redaction import redact
from reslab.tracking.rundir import RunDir

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
