"""Rules a config must satisfy: first every value against the domain its schema field declares,
then the rules across fields (presets, model vs data). Each failure is one sentence with the
key, the value and what is allowed. They read the config and the two catalogues (models,
datasets) only — no torch, no data on disk."""

from __future__ import annotations

import re

import yaml

from reslab import data, models
from reslab.config import domain
from reslab.config.schema import Config, ModelConfig
from reslab.errors import ConfigError
from reslab.models.catalog import SR_SCALES
from reslab.registry import did_you_mean, suggest

# model.* keys that go to the builder; each registered model lists the ones it takes (`options`).
BUILDER_KEYS = ("depth", "shortcut", "block", "preact", "width", "zero_init_residual",
                "global_residual", "res_scale")


def validate(cfg: Config) -> None:
    check_domains(cfg)
    validate_trainer(cfg)
    validate_slurm(cfg)
    if cfg.data.name not in data.DATASETS:
        raise ConfigError(f"data.name: unknown dataset '{cfg.data.name}'"
                          f"{suggest(cfg.data.name, data.DATASETS.names())}")
    validate_model(cfg)
    if cfg.data.val_size >= 1 and cfg.data.val_size != int(cfg.data.val_size):
        raise ConfigError(f"data.val_size must be a fraction below 1 or a whole count of images "
                          f"(best.ckpt is chosen on it, never on the test split), got "
                          f"{cfg.data.val_size}")


def check_domains(cfg: Config) -> None:
    """Every value against the domain its schema field declares (reslab.config.domain)."""
    if sentence := domain.first_violation(cfg):
        raise ConfigError(sentence)


def validate_trainer(cfg: Config) -> None:
    limit = cfg.trainer.limit_train_batches
    if limit is not None and limit > 1 and limit != int(limit):
        raise ConfigError(f"trainer.limit_train_batches must be a fraction up to 1 or a whole "
                          f"count of batches, got {limit}")


def validate_slurm(cfg: Config) -> None:
    """The warning signal comes before the time limit: a margin as long as the limit signalled
    each attempt as it started (checkpoint, requeue, again, up to slurm.max_restarts)."""
    s = cfg.slurm
    limit = time_seconds(s.time)
    if limit and s.signal_margin_s >= limit:
        raise ConfigError(f"slurm.signal_margin_s={s.signal_margin_s} is not shorter than "
                          f"slurm.time={s.time} ({limit} s): the job would be told to checkpoint "
                          "and requeue as it starts; give a margin well below the time limit")


def time_seconds(text: str) -> int:
    """SLURM's --time in seconds: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (0: no limit)."""
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days or len(parts) == 3:  # D-HH[:MM[:SS]], HH:MM:SS
        h, m, sec = (parts + [0, 0])[:3]
    else:  # MM, MM:SS
        h, m, sec = 0, parts[0], (parts + [0])[1]
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


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
    data_task = data.task_of(cfg.data.name)
    if info.task != data_task:
        fits = [n for n in data.DATASETS.names() if data.task_of(n) == info.task]
        raise ConfigError(f"model.name={m.name} is a {info.task.replace('_', '-')} model but "
                          f"data.name={cfg.data.name} is a {data_task.replace('_', '-')} dataset; "
                          f"use data.name={' or '.join(fits)}")
    refuse_unread_data_keys(cfg)
    if info.task == "super_resolution":
        validate_sr(cfg)


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


def refuse_unread_data_keys(cfg: Config) -> None:
    """A dataset-specific key (data.OWN_KEYS) set on a dataset that does not read it: the run
    would record a setting that did nothing (data.scale on digits, data.shape on CIFAR)."""
    defaults, reads = type(cfg.data)(), data.DATASETS.get(cfg.data.name).keys
    for key in data.OWN_KEYS:
        if key not in reads and (value := getattr(cfg.data, key)) != getattr(defaults, key):
            users = [n for n in data.DATASETS.names() if key in data.DATASETS.get(n).keys]
            raise ConfigError(f"data.{key}={domain.shown(value)} does not apply to "
                              f"data.name={cfg.data.name}, only to {', '.join(users)}; remove it")


def check_run_name(name: str, key: str = "run.name") -> None:
    """Run names become directory names and job names: the NAME domain."""
    if sentence := domain.check(key, name, domain.Domain(text=domain.NAME)):
        raise ConfigError(sentence)
