"""`reslab config`: the resolved, validated config as YAML."""

from __future__ import annotations

from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config import recipes as shipped
from reslab.config.load import load, to_yaml
from reslab.errors import UserError


def run(args) -> int:
    if args.list:
        if args.items:
            raise UserError(f"--list lists the shipped recipes and takes no recipe or override, "
                            f"got {' '.join(args.items)}; drop --list to resolve a config")
        for kind, command in (("recipe", "reslab train"), ("sweep spec", "reslab sweep")):
            print(f"{kind}s shipped in {shipped.root(kind)} (`{command} NAME`):")
            print("".join(f"  {name}\n" for name in shipped.names(kind)), end="")
        return 0
    recipes, overrides = split_args(args.items)
    print(to_yaml(load(recipes or [DEFAULT_RECIPE], overrides)), end="")
    return 0
