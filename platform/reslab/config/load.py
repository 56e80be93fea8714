"""Load a config: safe YAML recipes and KEY=VALUE overrides merged in order onto the schema
(OmegaConf struct mode refuses unknown keys and wrong types), validated, and handed out as a
frozen `Config`. This is the one place that refuses a bad config value."""

from __future__ import annotations

import functools
import re
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from reslab.config import domain
from reslab.config import validate as V
from reslab.config.kinds import (
    check_kinds,
    check_no_interpolation,
    check_section,
    field_domain,
    field_type,
    schema_keys,
)
from reslab.config.schema import Config, ModelConfig
from reslab.config.yaml12 import BadKey, SafeLoader, UniqueKeyLoader, dump
from reslab.errors import ConfigError
from reslab.models.catalog import ARCH_KEYS, MODELS
from reslab.registry import did_you_mean

MAX_YAML_BYTES = 1 << 20
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def load(recipes: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Schema defaults ← each recipe in order ← KEY=VALUE overrides, validated and frozen."""
    cfg = defaults()
    for path in recipes:
        cfg = merge(cfg, reset_to_preset(cfg, read_yaml(path)), source=f"recipe file '{path}'")
    cfg = merge(cfg, reset_to_preset(cfg, parse_overrides(overrides)), source="the command line")
    return to_config(cfg)


@functools.cache
def defaults() -> DictConfig:
    """The schema as a structured config, built once (most of a load's time): merges return a
    new config and never change this one."""
    return OmegaConf.structured(Config)


def derive(cfg: Config, changes: dict[str, Any], source: str | None = None) -> Config:
    """A new validated config: `cfg` with dotted keys set (`{"trainer.max_steps": 35}`). The
    code's way to vary a config (sweep trials, bench, SLURM geometry): `cfg` stays as it was.
    `source` names where the changes came from in a refusal (a sweep's space)."""
    nested: dict = {}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    base = OmegaConf.structured(cfg)
    merged = merge(base, reset_to_preset(base, nested), source=source or "the derived config")
    try:
        return to_config(merged)
    except ConfigError as e:
        if source is None:
            raise
        raise ConfigError(f"{e} (values from {source})") from None


def reset_to_preset(cfg: DictConfig, layer: dict) -> dict:
    """A layer that names a different model starts from that name's definition: a preset's
    depth, shortcut, block and preact, or a family's defaults, whatever lower layers set. The
    layer's own model keys apply on top, so one that contradicts its preset is refused by
    validation (`model.name=plain20 model.shortcut=A`)."""
    model = layer.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str) or name not in MODELS or name == cfg.model.name:
        return layer
    info, defaults = MODELS.get(name), ModelConfig()
    reset = {k: info.fixed.get(k, getattr(defaults, k)) for k in ARCH_KEYS}  # a family: {}
    return {**layer, "model": {**reset, **model}}


def to_config(cfg: DictConfig) -> Config:
    """The merged DictConfig as the frozen, typed Config, validated: what every caller gets."""
    obj = OmegaConf.to_object(cfg)
    V.validate(obj)
    return obj


def read_yaml(path: str | Path, what: str = "recipe file") -> dict:
    """Safe YAML only: a regular file, bounded size, no Python tags, no aliases (expansion
    bombs), no interpolation. `what` names the file in a refusal (a recipe, a sweep spec)."""
    p, what = Path(path), f"{what} '{path}'"
    if p.is_dir():
        raise ConfigError(f"{what} is a directory, not a YAML file")
    if not p.exists():
        raise ConfigError(f"{what} does not exist")
    if not p.is_file():  # read, a FIFO or /dev/stdin would wait and /dev/zero never end
        raise ConfigError(f"{what} is not a regular file (a FIFO, device or socket); give a "
                          "YAML file")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_YAML_BYTES} bytes")
    try:
        text = p.read_text()
        for event in yaml.parse(text, Loader=SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"{what} uses YAML aliases (*name), which reslab does not "
                                  "allow; write the values out")
            if getattr(event, "version", None) not in (None, (1, 2)):
                raise ConfigError(f"{what} declares %YAML "
                                  f"{'.'.join(map(str, event.version))}; reslab reads YAML 1.2 "
                                  "(017 is 17, yes is text): remove the %YAML line")
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python tags
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not text (UTF-8 YAML)") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply") from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{what} is not valid YAML: {first}") from None
    except BadKey as e:
        raise ConfigError(f"{what}: {e}") from None
    except OSError as e:
        raise ConfigError(f"{what} cannot be read: {e.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must hold a mapping of keys, got {type(data).__name__}")
    return data


def parse_overrides(overrides: list[str]) -> dict:
    """`model.depth=56` → {"model": {"depth": 56}}. Values are YAML, except for keys whose
    schema type is text (a path, a name, a time): those keep the characters as typed."""
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like KEY=VALUE (e.g. model.depth=56)")
        if CONTROL.search(item):
            raise ConfigError(f"override {item!r} contains a control character (a newline?)")
        node = out
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            check_section(".".join(parents[:i + 1]), item)
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a key below the value '{part}'")
        node[leaf] = _value(key, raw)
    return out


def _value(key: str, raw: str) -> Any:
    kind = field_type(key)
    if kind is not None and _is_text(kind):
        return None if raw in ("null", "~") and type(None) in typing.get_args(kind) else raw
    try:
        return yaml.load(raw, Loader=UniqueKeyLoader) if raw else ""
    except yaml.YAMLError:
        return raw
    except RecursionError:
        raise ConfigError(f"the value of override '{key}' is nested too deeply") from None


def _is_text(kind: Any) -> bool:
    """str or str | None (not a list of str, not an Enum)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(kind) if a is not type(None)] if union else [kind]
    return len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], str) \
        and not issubclass(args[0], Enum)


def merge(cfg: DictConfig, data: dict, source: str, what: str = "config key") -> DictConfig:
    """`data` onto the structured `cfg` (struct mode: unknown keys and wrong types refused)."""
    check_no_interpolation(data, source)
    check_kinds(data, OmegaConf.get_type(cfg), source, what)
    try:
        return OmegaConf.merge(cfg, data)
    except ConfigKeyError as e:
        key = e.full_key or "?"
        raise ConfigError(f"unknown {what} '{key}' in {source}"
                          f"{did_you_mean(key, schema_keys(OmegaConf.get_type(cfg)))}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        kind = field_type(key, OmegaConf.get_type(cfg))
        choice = next((k for k in (kind, *typing.get_args(kind)) if isinstance(k, type) and
                       issubclass(k, Enum)), None)  # an Enum, or an Enum or None
        if choice is not None:
            value, allowed = str(OmegaConf.select(OmegaConf.create(data), key)), [m.value for m in choice]
            null = "null or " if choice is not kind else ""
            raise ConfigError(f"{key} must be {null}one of {', '.join(allowed)}, got '{value}'"
                              f"{did_you_mean(value, allowed)}") from None
        key = re.sub(r"\[\d+\]$", "", key)  # data.classes[0]: the list's key
        if (d := field_domain(key, OmegaConf.get_type(cfg))) is not None:
            given = OmegaConf.select(OmegaConf.create(data), key, default=None)
            kind = str(field_type(key, OmegaConf.get_type(cfg)))
            null = "null or " if "None" in kind else ""
            raise ConfigError(f"{key} must be {null}{domain.describe(d, 'int' in kind)}, got "
                              f"{domain.shown(given)} in {source}") from None
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value for config key '{key}' in {source}: {msg}") from None


def all_keys() -> list[str]:
    """Every dotted key of the config schema."""
    return schema_keys(Config)


def to_dict(cfg: Config) -> dict:
    """Plain types only (Enum members as their strings): for YAML, JSON, W&B and checkpoints."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def to_yaml(cfg: Config) -> str:
    return dump(to_dict(cfg), sort_keys=False)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 56}} -> {'model.depth': 56}: the flat keys W&B and sweeps group by."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
