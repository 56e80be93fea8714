"""YAML as reslab reads and writes it: safe (no Python tags), every key once and a name, and
booleans and numbers as YAML 1.2 reads them; written so that any reader gets the same values
back."""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from reslab.errors import ConfigError


class BadKey(ConfigError):
    """A key written twice in one YAML mapping, or one that is not a name."""


SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: 20x faster


# YAML 1.2's core schema for booleans and numbers. PyYAML knows only YAML 1.1's, where 017 is
# 15, 0b101 is 5, 1:50 is 110, 1_0.0_1 is 10.01, 2020-01-01 is a date, yes is True and 1e-3 is
# text: a value would change silently on its way into a config.
CORE_SCALARS = [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
]
YAML_11_ONLY = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
# YAML types no config value has (PyYAML would give a datetime, a set, bytes, a list of pairs).
NOT_CONFIG = {f"tag:yaml.org,2002:{t}" for t in ("timestamp", "set", "binary", "omap", "pairs")}


class UniqueKeyLoader(SafeLoader):
    """Safe YAML, its booleans and numbers as YAML 1.2 reads them (CORE_SCALARS), that refuses
    a key written twice in one mapping (YAML would keep the last) and a key that is not a name
    (a list or a mapping)."""

    yaml_implicit_resolvers = {c: [(tag, rx) for tag, rx in resolvers if tag not in YAML_11_ONLY]
                               for c, resolvers in SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                raise BadKey(f"a key on line {line} is a {type(key).__name__}; keys are "
                                  "names")
            if key in seen:
                raise BadKey(f"the key '{key}' appears twice in one mapping "
                                   f"(line {line}); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_core(self, node):
        """A boolean or a number, implicit or tagged (!!int 1_0, !!bool yes), only as YAML 1.2
        writes it; a date, a set, bytes or pairs are not config values."""
        tag = node.tag.rsplit(":", 1)[-1]
        if node.tag in NOT_CONFIG:
            raise yaml.constructor.ConstructorError(
                None, None, f"!!{tag} values are not config values", node.start_mark)
        text = self.construct_scalar(node)
        pattern = next((rx for t, rx, _ in CORE_SCALARS if t == tag), None)
        if pattern is None or not re.match(pattern, text):
            raise yaml.constructor.ConstructorError(
                None, None, f"{text!r} is not a YAML 1.2 {tag}", node.start_mark)
        if tag == "bool":
            return text.lower() == "true"
        if tag == "float":
            return SafeLoader.construct_yaml_float(self, node)
        digits = text.lstrip("+-")  # 1.2's integers: decimal (a leading 0 is not octal), 0o, 0x
        base = {"0o": 8, "0x": 16}.get(digits[:2].lower(), 10)
        if len(digits) > 4000:  # Python refuses to convert more than 4300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(digits)} digits is too large", node.start_mark)
        value = int(digits[2:] if base != 10 else digits, base)
        return -value if text.startswith("-") else value


class Dumper(yaml.SafeDumper):
    """Safe YAML that quotes every text a YAML 1.1 or a 1.2 reader would take for a boolean or
    a number (a run named 1e3 stays a name when its config.yaml is read back)."""


for tag, pattern, first in CORE_SCALARS:
    for cls in (UniqueKeyLoader, Dumper):
        cls.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern), list(first))
for tag in YAML_11_ONLY | NOT_CONFIG:
    UniqueKeyLoader.add_constructor(tag, UniqueKeyLoader.construct_core)


def dump(data: Any, **options) -> str:
    return yaml.dump(data, Dumper=Dumper, **options)


def reads_as_number(text: str) -> bool:
    """YAML 1.2 reads `text` as a number, or it is nan or inf as Python writes them (the value's
    domain decides those). OmegaConf would take `1_0` for 10 too, as Python's int() does."""
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return True
    try:
        value = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError:
        return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)
