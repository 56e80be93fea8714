"""Recipes by name. The YAML files of the top-level `configs/` and `sweeps/` ship inside the
package as `reslab/recipes/{configs,sweeps}` (links to those folders in the source tree, copies
in the wheel), so `reslab train experiment/cifar10_paper` and `reslab sweep degradation_digits`
work from any directory of any install. A path that exists always wins over a name."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from reslab.errors import ConfigError
from reslab.registry import did_you_mean

FOLDERS = {"recipe": "configs", "sweep spec": "sweeps"}


def root(kind: str = "recipe") -> Path:
    """The folder the shipped files of `kind` live in (inside the installed package)."""
    return Path(str(files("reslab") / "recipes" / FOLDERS[kind])).resolve()


def names(kind: str = "recipe") -> list[str]:
    """The shipped names, e.g. `quickstart`, `experiment/cifar10_paper`."""
    base = root(kind)
    return sorted(p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.yaml"))


def shipped(name: str, kind: str = "recipe") -> Path:
    return root(kind) / f"{name}.yaml"


def resolve(arg: str | Path, kind: str = "recipe") -> str:
    """`arg` itself when that path exists; else the shipped file it names (`quickstart`,
    `experiment/cifar10_paper`, also written `configs/experiment/cifar10_paper.yaml`)."""
    text = str(arg)
    if not text.strip():  # Path("") is the current folder
        raise ConfigError(f"the {kind} is an empty path; give a file or a shipped {kind} name")
    if "\x00" in text:
        raise ConfigError(f"{kind} file {text!r} contains a NUL byte, which no path can hold")
    if Path(text).exists():
        return text
    name = text.removeprefix("./").removeprefix(f"{FOLDERS[kind]}/")
    name = name.removesuffix(".yaml").removesuffix(".yml")
    known = names(kind)
    if name in known:
        return str(shipped(name, kind))
    if Path(text).is_symlink():
        raise ConfigError(f"{kind} file '{text}' is a link to nothing, or a loop of links; "
                          "give the file itself")
    hint = did_you_mean(name, known) or f" (shipped: {', '.join(known)})"
    raise ConfigError(f"{kind} file '{text}' does not exist and is not a shipped {kind} name"
                      f"{hint}")


def is_file(text: str) -> bool:
    """A regular file at this path (False for a path no file system can hold)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False
