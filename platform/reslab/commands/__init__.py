"""One module per `reslab` subcommand, each with `run(args) -> int`: load the inputs, call the
module that does the work, print the result. `reslab.cli` imports only the module of the command
it runs, so `reslab config` never loads Lightning; each module imports what it needs at the
top, like any other."""

from __future__ import annotations

from reslab.config import recipes as shipped

# `reslab train` with no recipe trains the quickstart (shipped inside the package).
DEFAULT_RECIPE = shipped.shipped("quickstart")


def split_args(items: list[str]) -> tuple[list[str], list[str]]:
    """Recipes (paths, or the names of shipped recipes) and KEY=VALUE overrides may come in any
    order; recipes come back as paths."""
    recipes = [shipped.resolve(a) for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    return recipes, overrides
