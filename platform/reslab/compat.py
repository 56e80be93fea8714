"""Every use of another library's private or experimental API, and of behaviour its docs do not
promise, in one place. Each names the version it was verified on; tests/test_compat.py checks
each against the installed library and fails with the name of what changed, so an upgrade
breaks loudly here instead of silently at a call site. Imports nothing from reslab (W&B and Ray
only inside the functions that need them, so `import reslab` and the CLI stay light)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# --- PyTorch 2.14.1 ----------------------------------------------------------------------------


def is_batchnorm(module) -> bool:
    """BatchNorm1d/2d/3d or SyncBatchNorm: their base class `_BatchNorm` (no public name covers
    them all). torch is imported here, not above: the CLI imports this module and must not pay
    for torch (its callers have it loaded already)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return isinstance(module, _BatchNorm)

# --- Lightning 2.6.6 ---------------------------------------------------------------------------

# The attribute Lightning sets on the LightningModule before and after every hook it calls
# (~30 times a step); Task skips Module.__setattr__'s checks for it, as Lightning's own
# _ResultMetric does.
HOOK_NAME_ATTR = "_current_fx_name"


def lightning_keyboard_interrupt(e: SystemExit) -> bool:
    """Lightning's `_call_and_handle_interrupt` (trainer/call.py) turns a KeyboardInterrupt into
    `sys.exit(1)`, which leaves the interrupt as the exit's context."""
    return isinstance(e.__context__, KeyboardInterrupt)


def wandb_init_args(logger) -> dict:
    """The keyword arguments Lightning's WandbLogger keeps for `wandb.init` (`_wandb_init`)."""
    return logger._wandb_init


def wandb_run_if_started(logger) -> Any:
    """The logger's W&B run, or None when it has not started (`logger.experiment` would start
    one: `_experiment`)."""
    return logger._experiment


# --- W&B 0.31.0 --------------------------------------------------------------------------------


def wandb_settings(system_metrics: bool, **settings):
    """W&B settings; turning the system monitor off is the experimental `x_disable_stats`."""
    import wandb

    return wandb.Settings(x_disable_stats=not system_metrics, **settings)


def log_artifact_used_after_commit(experiment, artifact) -> None:
    """W&B refuses `use_artifact` offline; a draft logged with `use_after_commit` is what
    `use_artifact` does online with a draft, and `wandb sync` replays it (`Run._log_artifact`)."""
    experiment._log_artifact(artifact, aliases=[], is_user_created=True, use_after_commit=True)


# --- Ray 2.60.0 --------------------------------------------------------------------------------


def ray_local_init_args(temp_dir: Path) -> dict:
    """`ray.init` keywords for a private local instance: its files under `temp_dir` (Ray's
    default /tmp/ray is shared by every user of a node) and the loopback address (a node's
    other interfaces may be firewalled): `_temp_dir`, `_node_ip_address`."""
    return {"_temp_dir": str(temp_dir), "_node_ip_address": "127.0.0.1"}


# --- NumPy pickles (CIFAR's python version), verified with NumPy 1.x and 2.x --------------------

# What an array in a pickle is rebuilt from: the only globals CIFAR's unpickler may load.
NUMPY_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes")})  # bytes(): an empty array's buffer

# --- argparse (Python 3.10-3.13) ---------------------------------------------------------------


def parser_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A parser's arguments (`_actions`), e.g. to attach shell completers."""
    return parser._actions


class ParagraphFormatter(argparse.HelpFormatter):
    """Prose wrapped to the terminal; an `examples:` paragraph kept line by line
    (`HelpFormatter._fill_text`)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(p if p.startswith("examples:") else fill(p, width, indent)
                           for p in text.split("\n\n"))
