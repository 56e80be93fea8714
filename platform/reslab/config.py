"""Typed config schema + load / merge / override / validate / save.

One default per key, with a one-line comment where it is defined. Recipes (YAML) and KEY=VALUE
overrides merge onto the schema in order; anything the schema does not know is an error."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from reslab.errors import UserError
from reslab.registry import did_you_mean, suggest

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
MAX_YAML_BYTES = 1 << 20


class ConfigError(UserError, ValueError):
    """Bad user input: the message is one sentence naming the key, the value and what is allowed."""


@dataclass
class ModelConfig:
    name: str = "cifar_resnet"        # a family (cifar_resnet), a preset (resnet56), or vdsr/edsr
    depth: int | None = None          # None: the preset's depth (20 for cifar_resnet, 50 for imagenet_resnet)
    shortcut: str | None = None       # A | B | C | none (plain); edsr: identity | none; None: the preset's
    preact: bool = False              # pre-activation blocks (He et al. 2016)
    width: float = 1.0                # stage-width multiplier (wide ResNets)
    zero_init_residual: bool = False  # zero-init each residual branch's last BN (vdsr/edsr: last conv)
    global_residual: bool | None = None  # vdsr/edsr: add the input back at the end; None: on
    weights: str = "none"             # none | torchvision name (IMAGENET1K_V2) | run dir | checkpoint file
    freeze: str = "none"              # none | stem | layer1..layer4 (up to and including) | backbone


@dataclass
class DataConfig:
    name: str = "digits"              # digits|cifar10|cifar100|imagefolder|synthetic; SR: photos|sr_folder
    root: str = "data"                # where on-disk datasets live
    download: bool = False            # fetch CIFAR when missing (needs internet)
    batch_size: int = 128             # per device
    val_size: float = 0.15            # held out of the training set: a fraction, or a count (5000)
    split_seed: int = 0               # the train/val split is fixed across runs and seeds
    augment: bool = True              # paper augmentation (pad + random crop, flip where it applies)
    normalize: str = "pixel_mean"     # pixel_mean (the paper's) | channel | none
    pipeline: str = "auto"            # auto | memory (whole set as one tensor) | loader (DataLoader)
    num_workers: int = 2              # DataLoader workers (pipeline=loader)
    image_size: int = 224             # crop size for imagefolder
    num_classes: int = 10             # synthetic only
    shape: list[int] = field(default_factory=lambda: [3, 32, 32])  # synthetic only (C, H, W)
    size: int = 2048                  # synthetic: number of samples; super-resolution: patches per epoch
    scale: int = 2                    # super-resolution: upscaling factor 2 | 3 | 4
    patch_size: int = 48              # super-resolution: high-resolution training patch side
    classes: list[int] | None = None  # keep only these labels, renumbered 0..k-1 (digits 0-4)
    mean: list[float] | None = None   # imagefolder normalisation; None: the weights' own or ImageNet's
    std: list[float] | None = None
    resize_size: int | None = None    # imagefolder eval resize; None: the weights' own or 8/7 x crop


@dataclass
class OptimConfig:
    name: str = "sgd"                 # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays every parameter; false spares BN and biases
    schedule: str = "cosine"          # paper | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])  # paper: iterations
    gamma: float = 0.1                # paper: lr factor at each milestone
    warmup_steps: int = 0             # linear warm-up from 0 over this many iterations
    warmup_lr: float | None = None    # ResNet-110 rule: this lr until train error < warmup_until_err
    warmup_until_err: float = 0.8
    label_smoothing: float = 0.0
    loss: str = "l1"                  # super-resolution: l1 | l2 (classification: cross-entropy)
    backbone_lr_mult: float = 1.0     # lr factor for everything but the classifier (fine-tuning)


@dataclass
class TrainerConfig:
    max_epochs: int = 30
    max_steps: int = -1               # -1: no step limit
    accelerator: str = "auto"         # auto | cpu | gpu
    devices: int = 1                  # per node
    num_nodes: int = 1
    precision: str = "32-true"        # 32-true | bf16-mixed | 16-mixed
    deterministic: bool = False
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    gradient_clip_val: float | None = None
    limit_train_batches: float | None = None  # a fraction or a count; None: all
    checkpoint_every_n_steps: int = 0  # also write last.ckpt every N steps (hard kills); 0: epochs only
    channels_last: bool = False       # NHWC tensors (faster convolutions on tensor-core GPUs)
    compile: bool = False             # torch.compile the network (GPU; the first steps compile)
    cudnn_benchmark: bool = True      # let cuDNN pick the fastest kernels for fixed input shapes
    sync_batchnorm: bool = False      # BN statistics across DDP ranks (small per-GPU batches)
    progress_bar: bool = True         # a tqdm bar on a terminal, one line per epoch otherwise


@dataclass
class RunConfig:
    root: str = "runs"
    name: str = "default"
    test: bool = True                 # evaluate best.ckpt on the test split after fitting


@dataclass
class WandbConfig:
    mode: str = "offline"             # offline | online | disabled
    project: str = "reslab"
    entity: str | None = None
    group: str | None = None
    name: str | None = None          # display name; None: run.name (a sweep sets the trial's overrides)
    tags: list[str] = field(default_factory=list)
    job_type: str = "train"


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class SlurmConfig:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "01:00:00"
    nodes: int = 1
    gpus_per_node: int = 0            # 0: CPU job, one task per node
    cpus_per_task: int = 2
    mem: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines before srun (module load ...)
    extra: list[str] = field(default_factory=list)  # extra #SBATCH options
    signal_margin_s: int = 120        # USR1 this long before the time limit
    max_restarts: int = 3


@dataclass
class DiagnosticsConfig:
    every_n_steps: int = 0            # log per-block response std and gradient norm; 0: off


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


def load(recipes: list[str | Path] = (), overrides: list[str] = (), *, validated: bool = True
         ) -> DictConfig:
    """Schema ← each recipe in order ← KEY=VALUE overrides; then `validate` unless told not to."""
    cfg = OmegaConf.structured(Config)
    for path in recipes or [DEFAULT_RECIPE]:
        cfg = merge(cfg, read_yaml(path), source=str(path))
    cfg = merge(cfg, parse_overrides(overrides), source="the command line")
    if validated:
        validate(cfg)
    return cfg


def read_yaml(path: str | Path) -> dict:
    """Safe YAML only: no Python tags, bounded size, no alias expansion bombs."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file '{path}' does not exist")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"recipe file '{path}' is larger than {MAX_YAML_BYTES} bytes")
    text = p.read_text()
    try:
        events = list(yaml.parse(text, Loader=yaml.SafeLoader))
        if any(isinstance(e, yaml.AliasEvent) for e in events):
            raise ConfigError(f"recipe file '{path}' uses YAML aliases (*name), which reslab "
                              "does not allow; write the values out")
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"recipe file '{path}' is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe file '{path}' must hold a mapping of keys, got "
                          f"{type(data).__name__}")
    return data


def parse_overrides(overrides: list[str]) -> dict:
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like KEY=VALUE (e.g. model.depth=56)")
        if CONTROL.search(item):
            raise ConfigError(f"override {item!r} contains a control character (a newline?)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a key below the value '{part}'")
        node[leaf] = value
    return out


def merge(cfg: DictConfig, data: dict, source: str) -> DictConfig:
    check_keys(data, source)
    try:
        return OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value for config key '{key}' in {source}: {msg}") from None


def check_keys(data: dict, source: str, prefix: str = "", schema: Any = Config) -> None:
    """Every key must exist in the schema; the error names the closest real key."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            known = [f"{prefix}{k}" for k in all_keys(schema)]
            raise ConfigError(f"unknown config key '{full}' in {source}"
                              f"{did_you_mean(full, known)}")
        sub = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            check_keys(value, source, f"{full}.", sub)


def all_keys(schema: Any = Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            keys += all_keys(sub, f"{f.name}.")
        else:
            keys.append(f.name)
    return [f"{prefix}{k}" for k in keys]


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHOICES = {
    "data.normalize": ("pixel_mean", "channel", "none"),
    "data.pipeline": ("auto", "memory", "loader"),
    "optim.name": ("sgd", "adamw"),
    "optim.schedule": ("paper", "cosine", "onecycle", "constant"),
    "optim.loss": ("l1", "l2"),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda"),
    "trainer.precision": ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"),
    "logger.wandb.mode": ("offline", "online", "disabled"),
}
POSITIVE = ("data.batch_size", "trainer.max_epochs", "trainer.devices", "trainer.num_nodes",
            "trainer.log_every_n_steps", "trainer.check_val_every_n_epoch", "slurm.nodes",
            "slurm.cpus_per_task")


def validate(cfg: DictConfig) -> DictConfig:
    """Cross-field rules; each failure is one sentence with the key, the value and what is allowed."""
    from reslab import data, models  # registries; imported late to keep config import light

    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got '{value}'"
                              f"{did_you_mean(value, allowed)}")
    for key in POSITIVE:
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {OmegaConf.select(cfg, key)}")
    if cfg.data.name not in data.DATASETS:
        raise ConfigError(f"data.name: unknown dataset '{cfg.data.name}'"
                          f"{suggest(cfg.data.name, data.DATASETS.names())}")
    _validate_model(cfg, models, data)
    if not 0 < cfg.optim.lr < 100:
        raise ConfigError(f"optim.lr must be in (0, 100), got {cfg.optim.lr}")
    if cfg.data.val_size < 0:
        raise ConfigError(f"data.val_size must be a fraction or a count >= 0, got {cfg.data.val_size}")
    check_run_name(cfg.run.name)
    return cfg


def _validate_model(cfg: DictConfig, models, data) -> None:
    m = cfg.model
    if m.name not in models.MODELS:
        raise ConfigError(f"model.name: unknown model '{m.name}'"
                          f"{suggest(m.name, models.MODELS.names())}")
    meta = models.MODELS.get(m.name).meta
    if unused := unused_options(m, meta["options"]):
        key = unused[0]
        default = yaml.safe_dump(getattr(ModelConfig(), key)).split("\n")[0]
        raise ConfigError(f"model.{key}={m[key]} does not apply to model.name={m.name}, which "
                          f"takes {', '.join('model.' + o for o in meta['options'])} (reset it "
                          f"with model.{key}={default})")
    if m.shortcut is not None and m.shortcut not in meta["shortcuts"]:
        raise ConfigError(f"model.shortcut must be one of {', '.join(meta['shortcuts'])} for "
                          f"{m.name} (none = the plain network), got '{m.shortcut}'")
    if m.depth is not None:
        if meta.get("depth") is not None and m.depth != meta["depth"]:
            family = f"{meta['family']}_resnet"
            raise ConfigError(f"model.depth={m.depth} conflicts with model.name={m.name} (depth "
                              f"{meta['depth']}); use model.name={family} to choose the depth")
        if err := models.depth_error(meta["family"], m.depth):
            raise ConfigError(f"model.{err}")
    if m.width <= 0:
        raise ConfigError(f"model.width must be positive, got {m.width}")
    task, data_task = meta["task"], data.task_of(cfg.data.name)
    if task != data_task:
        fits = [n for n in data.DATASETS.names() if data.task_of(n) == task]
        raise ConfigError(f"model.name={m.name} is a {task.replace('_', '-')} model but "
                          f"data.name={cfg.data.name} is a {data_task.replace('_', '-')} dataset; "
                          f"use data.name={' or '.join(fits)}")
    from reslab.pretrained import FREEZE_LEVELS

    if m.freeze not in FREEZE_LEVELS:
        raise ConfigError(f"model.freeze must be one of {', '.join(FREEZE_LEVELS)}, got "
                          f"'{m.freeze}'{did_you_mean(m.freeze, FREEZE_LEVELS)}")
    if task == "super_resolution":
        _validate_sr(cfg)


# model.* keys that go to the builder; each registered model lists the ones it takes (`options`).
BUILDER_KEYS = ("depth", "shortcut", "preact", "width", "zero_init_residual", "global_residual")


def unused_options(m: DictConfig, options: tuple[str, ...]) -> list[str]:
    """Builder keys set away from their schema default that this model does not take."""
    defaults = ModelConfig()
    return [k for k in BUILDER_KEYS if k not in options and m[k] != getattr(defaults, k)]


def _validate_sr(cfg: DictConfig) -> None:
    from reslab.models.sr import SCALES

    d = cfg.data
    if d.scale not in SCALES:
        raise ConfigError(f"data.scale must be one of {', '.join(map(str, SCALES))}, got {d.scale}")
    if d.patch_size % d.scale or d.patch_size < 4 * d.scale:
        raise ConfigError(f"data.patch_size must be a multiple of data.scale={d.scale} and at "
                          f"least {4 * d.scale}, got {d.patch_size}")
    if cfg.model.freeze != "none":
        raise ConfigError(f"model.freeze={cfg.model.freeze} applies to ResNet classifiers only; "
                          "super-resolution models train whole (model.freeze=none)")


def check_run_name(name: str) -> None:
    """Run names become directory names and job names: one path component, printable."""
    if not name or CONTROL.search(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"run.name must be a single printable path component (no '/', '..' or "
                          f"control characters), got {name!r}")


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments the model builder takes from config (None = the model's default)."""
    from reslab.models import MODELS

    options = MODELS.get(cfg.model.name).meta["options"]
    return {k: cfg.model[k] for k in options if cfg.model[k] is not None}


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: DictConfig | ListConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 56}} -> {'model.depth': 56}: the flat keys W&B and sweeps group by."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
