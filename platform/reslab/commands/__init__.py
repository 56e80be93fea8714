"""One module per `reslab` subcommand, each with `run(args) -> int`: load the inputs, call the
module that does the work, print the result. `reslab.cli` imports only the module of the command
it runs, so `reslab config` never loads Lightning; each module imports what it needs at the
top, like any other."""

from __future__ import annotations

from reslab.config import recipes as shipped

# The subcommands' modules, which the CLI imports by name (reslab.cli.command) when one runs;
# DEFAULT_RECIPE and split_args are the commands' own.
__all__ = ["bench", "compare", "config", "export", "models", "status", "submit", "sweep", "test",
           "train"]

# `reslab train` with no recipe trains the quickstart (shipped inside the package).
DEFAULT_RECIPE = shipped.shipped("quickstart")


def split_args(items: list[str]) -> tuple[list[str], list[str]]:
    """Recipes (paths, or the names of shipped recipes) and KEY=VALUE overrides may come in any
    order; recipes come back as paths. A YAML file whose path holds '=' is a recipe."""
    recipes = [shipped.resolve(a) for a in items if not is_override(a)]
    overrides = [a for a in items if is_override(a)]
    return recipes, overrides


def is_override(item: str) -> bool:
    return "=" in item and not (item.endswith((".yaml", ".yml")) and shipped.is_file(item))
