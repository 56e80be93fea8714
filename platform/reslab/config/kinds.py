"""What kind of value each config key takes, checked on the raw YAML or KEY=VALUE data before
OmegaConf builds anything from it: keys known, sections given mappings, lists given lists,
true/false given booleans, no interpolation. Each refusal is the domain's sentence
(reslab.config.domain)."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from reslab.config import domain
from reslab.config.schema import Config
from reslab.config.yaml12 import reads_as_number
from reslab.errors import ConfigError
from reslab.registry import did_you_mean


def check_section(key: str, item: str) -> None:
    """Only sections have keys below them: `data.shape.0=5` would set an element of a list."""
    kind = field_type(key)
    if kind is not None and not dataclasses.is_dataclass(kind):
        whole = "; set the whole list, e.g. data.shape=[3,32,32]" if "list" in str(kind) else ""
        raise ConfigError(f"override '{item}' sets a key below {key}, which is a value, not a "
                          f"section{whole}")


def field_type(key: str, schema: type = Config) -> Any:
    """The annotated type of a dotted key, or None when the schema has no such key."""
    *parents, leaf = key.split(".")
    for part in parents:
        sub = typing.get_type_hints(schema).get(part)
        if not dataclasses.is_dataclass(sub):
            return None
        schema = sub
    return typing.get_type_hints(schema).get(leaf)


def field_domain(key: str, schema: type = Config) -> domain.Domain | None:
    """The domain the schema declares for a dotted key, None for a section or an unknown key."""
    *parents, leaf = key.split(".")
    parent = field_type(".".join(parents), schema) if parents else schema
    if not dataclasses.is_dataclass(parent):
        return None
    f = next((f for f in dataclasses.fields(parent) if f.name == leaf), None)
    return domain.domain_of(f) if f else None


def check_kinds(data: Any, schema: type, source: str, what: str, prefix: str = "") -> None:
    """Each key known and each value of the kind its key holds, before OmegaConf builds anything
    from it: a section takes a mapping, a list a list, true/false a boolean (OmegaConf would read
    3 or 0.5 as true), a number or a word neither a list nor a mapping."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(schema):
        return
    hints = typing.get_type_hints(schema)
    for k, v in data.items():
        key, kind = f"{prefix}{k}", hints.get(k)
        if kind is None:
            near = [*schema_keys(schema, prefix), *(prefix + h for h in hints)]
            raise ConfigError(f"unknown {what} '{key}' in {source}{did_you_mean(key, near)}")
        if v is None and type(None) in typing.get_args(kind):
            continue
        if dataclasses.is_dataclass(kind):
            if not isinstance(v, dict):
                raise ConfigError(f"{key} is a section of keys ({', '.join(typing.get_type_hints(kind))}), "
                                  f"not a value; set them as {key}.KEY=VALUE ({source})")
            check_kinds(v, kind, source, what, key + ".")
        elif (sentence := wrong_kind(key, v, kind, field_domain(str(k), schema))) is not None:
            raise ConfigError(f"{sentence} in {source}")


def wrong_kind(key: str, v: Any, kind: Any, d: domain.Domain | None) -> str | None:
    """The sentence for a value of the wrong kind for a list, boolean or scalar key (None: fine,
    or a kind this check leaves to OmegaConf, such as a mapping field)."""
    text, null = str(kind), "null or " if type(None) in typing.get_args(kind) else ""
    if "dict" in text or "Any" in text:
        return None
    is_list, is_bool = "list[" in text, kind in (bool, bool | None)
    number = re.search(r"\b(int|float)\b", text) is not None
    items = v if isinstance(v, list) else [v]
    if is_list == isinstance(v, list) and not isinstance(v, dict) and \
            (not is_bool or isinstance(v, bool)) and \
            not (number and any(isinstance(x, str) and not reads_as_number(x) for x in items)):
        return None
    words = "true or false" if is_bool or d is None else domain.describe(d, "int" in text)
    return f"{key} must be {null}{words}, got {domain.shown(v)}"


def check_no_interpolation(data: Any, source: str, key: str = "") -> None:
    """`${oc.env:WANDB_API_KEY}` would read the environment into the run's files: refused."""
    if isinstance(data, dict):
        for k, v in data.items():
            check_no_interpolation(v, source, f"{key}.{k}" if key else str(k))
    elif isinstance(data, list):
        for v in data:
            check_no_interpolation(v, source, key)
    elif isinstance(data, str) and "${" in data:
        raise ConfigError(f"{key}={data!r} in {source} uses interpolation ('${{...}}'), which "
                          "reslab does not allow (it can read the environment); write the value")


def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """The dotted keys of a schema dataclass, sections walked."""
    keys = []
    for name, kind in typing.get_type_hints(schema).items():
        if dataclasses.is_dataclass(kind):
            keys += schema_keys(kind, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys
