"""Rules a config must satisfy beyond its schema types: each failure is one sentence with the
key, the value and what is allowed. They read the config and the two catalogues (models,
datasets) only — no torch, no data on disk."""

from __future__ import annotations

import re
import unicodedata

import yaml

from reslab import data, models
from reslab.config.schema import PRECISIONS, Config, ModelConfig, select
from reslab.errors import ConfigError
from reslab.models.catalog import SR_SCALES
from reslab.registry import did_you_mean, suggest

POSITIVE = ("data.batch_size", "trainer.max_epochs", "trainer.devices", "trainer.num_nodes",
            "trainer.log_every_n_steps", "trainer.check_val_every_n_epoch", "slurm.nodes",
            "slurm.cpus_per_task", "data.image_size", "data.size")
AT_LEAST_ZERO = ("optim.weight_decay", "optim.warmup_steps", "data.num_workers",
                 "trainer.checkpoint_every_n_steps", "slurm.gpus_per_node", "slurm.max_restarts",
                 "slurm.signal_margin_s", "diagnostics.every_n_steps")
# low <= value < high (seed: numpy's range)
RANGES = {"optim.momentum": (0, 1), "optim.label_smoothing": (0, 1), "seed": (0, 2**32)}
LOG_MODEL = ("false", "best", "last", "all")  # logger.wandb.log_model
MAX_NAME = 200  # run.name is a directory name (255 bytes at most) and a job name
# model.* keys that go to the builder; each registered model lists the ones it takes (`options`).
BUILDER_KEYS = ("depth", "shortcut", "block", "preact", "width", "zero_init_residual",
                "global_residual", "res_scale")


def validate(cfg: Config) -> None:
    if cfg.trainer.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got "
                          f"'{cfg.trainer.precision}'{did_you_mean(cfg.trainer.precision, PRECISIONS)}")
    for keys, low in ((POSITIVE, 1), (AT_LEAST_ZERO, 0)):
        for key in keys:
            if (value := select(cfg, key)) < low:
                raise ConfigError(f"{key} must be at least {low}, got {value}")
    for key, (low, high) in RANGES.items():
        if not low <= (value := select(cfg, key)) < high:
            raise ConfigError(f"{key} must be in [{low}, {high}), got {value}")
    validate_trainer(cfg)
    if cfg.data.name not in data.DATASETS:
        raise ConfigError(f"data.name: unknown dataset '{cfg.data.name}'"
                          f"{suggest(cfg.data.name, data.DATASETS.names())}")
    validate_model(cfg)
    if not 0 < cfg.optim.lr < 100:
        raise ConfigError(f"optim.lr must be in (0, 100), got {cfg.optim.lr}")
    if cfg.data.val_size <= 0:
        raise ConfigError(f"data.val_size must be a fraction or a count > 0 (best.ckpt is chosen "
                          f"on it, never on the test split), got {cfg.data.val_size}")
    check_run_name(cfg.run.name)
    if str(cfg.logger.wandb.log_model).lower() not in LOG_MODEL:
        raise ConfigError(f"logger.wandb.log_model must be one of {', '.join(LOG_MODEL)}, got "
                          f"'{cfg.logger.wandb.log_model}'")


def validate_trainer(cfg: Config) -> None:
    t = cfg.trainer
    if t.max_steps == 0 or t.max_steps < -1:
        raise ConfigError(f"trainer.max_steps must be -1 (no limit) or at least 1, got "
                          f"{t.max_steps}")
    for key in ("gradient_clip_val", "limit_train_batches"):
        if (value := getattr(t, key)) is not None and value <= 0:
            raise ConfigError(f"trainer.{key} must be positive or null, got {value}")
    for key in ("channels_last", "compile"):  # bool | str in the schema: only "auto" as a word
        if isinstance(value := getattr(t, key), str) and value.lower() != "auto":
            raise ConfigError(f"trainer.{key} must be true, false or auto, got '{value}'")
    classes = cfg.data.classes
    if classes is not None and (len(set(classes)) != len(classes) or min(classes, default=0) < 0):
        raise ConfigError(f"data.classes must be distinct labels >= 0, got {list(classes)}")


def validate_model(cfg: Config) -> None:
    m = cfg.model
    if m.name not in models.MODELS:
        raise ConfigError(f"model.name: unknown model '{m.name}'"
                          f"{suggest(m.name, models.MODELS.names())}")
    info = models.info(m.name)
    if unused := unused_options(m, info.options):
        key = unused[0]
        default = yaml_value(getattr(ModelConfig(), key))
        raise ConfigError(f"model.{key}={getattr(m, key)} does not apply to model.name={m.name}, "
                          f"which takes {', '.join('model.' + o for o in info.options)} (reset "
                          f"it with model.{key}={default})")
    if info.depth is not None:
        check_preset(m, info)
    if m.shortcut is not None and m.shortcut not in info.shortcuts:
        raise ConfigError(f"model.shortcut must be one of {', '.join(info.shortcuts)} for "
                          f"{m.name} (none = the plain network), got '{m.shortcut}'")
    if m.block is not None and m.block not in info.blocks:
        if not info.blocks:
            raise ConfigError(f"model.block={m.block} applies to CIFAR ResNets only; leave it "
                              f"unset (null) for model.name={m.name}")
        raise ConfigError(f"model.block must be one of {', '.join(info.blocks)} for {m.name}, "
                          f"got '{m.block}'{did_you_mean(m.block, info.blocks)}")
    if m.depth is not None and (err := models.depth_error(info.family, m.depth, m.block)):
        raise ConfigError(f"model.{err}")
    if m.width <= 0:
        raise ConfigError(f"model.width must be positive, got {m.width}")
    data_task = data.task_of(cfg.data.name)
    if info.task != data_task:
        fits = [n for n in data.DATASETS.names() if data.task_of(n) == info.task]
        raise ConfigError(f"model.name={m.name} is a {info.task.replace('_', '-')} model but "
                          f"data.name={cfg.data.name} is a {data_task.replace('_', '-')} dataset; "
                          f"use data.name={' or '.join(fits)}")
    if info.task == "super_resolution":
        validate_sr(cfg)
    else:
        refuse_sr_data_keys(cfg)


def check_preset(m: ModelConfig, info: models.ModelInfo) -> None:
    """A preset is the model it names: set in the same layer (or later), a depth, block or
    pre-activation of another model is a contradiction, and so is a shortcut of the other kind
    (plain vs residual). Lower layers' values were reset when the preset was named."""
    for key in ("depth", "block", "preact"):
        value, fixed = getattr(m, key), info.fixed.get(key)
        if value is not None and fixed is not None and value != fixed:
            same_kind = re.sub(r"\d+$", str(value), m.name) if key == "depth" else None
            fix = (f"use model.name={same_kind}" if same_kind in models.MODELS else
                   f"drop model.{key} or name the family (model.name={info.family}_resnet) to "
                   "choose it")
            raise ConfigError(f"model.{key}={yaml_value(value)} contradicts model.name={m.name} "
                              f"({key} {yaml_value(fixed)}); {fix}")
    if m.shortcut is not None and m.shortcut not in info.shortcuts:
        plain = info.shortcuts == ("none",)
        other = m.name.replace("plain", "resnet") if plain else \
            m.name.replace("resnet", "plain").replace("preact_", "")
        hint = f"; model.name={other} is the {'residual' if plain else 'plain'} net" \
            if other in models.MODELS else ""
        raise ConfigError(f"model.shortcut={m.shortcut} contradicts model.name={m.name}, a "
                          f"{'plain' if plain else 'residual'} net (shortcut "
                          f"{' | '.join(info.shortcuts)}){hint}")


def yaml_value(value) -> str:
    return yaml.safe_dump(value).split("\n")[0]


def unused_options(m: ModelConfig, options: tuple[str, ...]) -> list[str]:
    """Builder keys set away from their schema default that this model does not take."""
    defaults = ModelConfig()
    return [k for k in BUILDER_KEYS if k not in options and getattr(m, k) != getattr(defaults, k)]


def validate_sr(cfg: Config) -> None:
    d = cfg.data
    if d.scale not in SR_SCALES:
        raise ConfigError(f"data.scale must be one of {', '.join(map(str, SR_SCALES))}, got {d.scale}")
    if d.patch_size % d.scale or d.patch_size < 4 * d.scale:
        raise ConfigError(f"data.patch_size must be a multiple of data.scale={d.scale} and at "
                          f"least {4 * d.scale}, got {d.patch_size}")
    if cfg.model.freeze != "none":
        raise ConfigError(f"model.freeze={cfg.model.freeze} applies to ResNet classifiers only; "
                          "super-resolution models train whole (model.freeze=none)")
    if cfg.model.res_scale <= 0:
        raise ConfigError(f"model.res_scale must be positive (EDSR baseline 1.0, EDSR 0.1), got "
                          f"{cfg.model.res_scale}")


def refuse_sr_data_keys(cfg: Config) -> None:
    """data.channels and data.test_root describe super-resolution data; classification data
    keep their own channels and test split."""
    defaults = type(cfg.data)()
    for key in ("channels", "test_root"):
        if (value := getattr(cfg.data, key)) != getattr(defaults, key):
            raise ConfigError(f"data.{key}={value} applies to super-resolution data only, not "
                              f"data.name={cfg.data.name}; remove it")


def check_run_name(name: str) -> None:
    """Run names become directory names and job names: one path component, printable."""
    if not name or not printable(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"run.name must be a single printable path component (no '/', '..' or "
                          f"control characters), got {name!r}")
    if len(name.encode()) > MAX_NAME:
        raise ConfigError(f"run.name must be at most {MAX_NAME} bytes, got {len(name.encode())}")


def printable(text: str) -> bool:
    """No control, format (zero-width, bidi), private-use or line/paragraph separator
    characters: what a terminal, a file name or a job script shows differently."""
    return not any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
                   for c in text)


