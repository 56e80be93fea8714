"""One module per `reslab` subcommand, each with `run(args) -> int`: load the inputs, call the
module that does the work, print the result. `reslab.cli` imports only the module of the command
it runs, so `reslab config` never loads Lightning; each module imports what it needs at the
top, like any other."""

from __future__ import annotations

from pathlib import Path

# `reslab train` with no recipe trains the quickstart (configs/ at the top of the source tree).
DEFAULT_RECIPE = Path(__file__).resolve().parents[3] / "configs" / "quickstart.yaml"


def split_args(items: list[str]) -> tuple[list[str], list[str]]:
    """Recipe paths and KEY=VALUE overrides may come in any order."""
    recipes = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    return recipes, overrides
