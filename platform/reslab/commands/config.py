"""`reslab config`: the resolved, validated config as YAML."""

from __future__ import annotations

from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config.load import load, to_yaml


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    print(to_yaml(load(recipes or [DEFAULT_RECIPE], overrides)), end="")
    return 0
