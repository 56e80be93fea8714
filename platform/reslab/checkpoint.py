"""Checkpoint files: written atomically, read weights-only, refused with a sentence when broken.

A checkpoint holds plain types only (tensors, numbers, strings, lists, dicts), so
`torch.load(weights_only=True)` reads it and a crafted pickle cannot run code."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from reslab.errors import UserError
from reslab.fileio import write_atomic


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupted or carries code."""


def load(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """`torch.load(weights_only=True)`, with every failure turned into one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = "it holds objects other than tensors and plain values (refused: loading it " \
                 "could run code)" if "weights_only" in str(e) or "Unsupported" in str(e) \
                 else "it is corrupted"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not one
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: it is truncated or corrupted "
                              f"({first[:120]})") from None


def newest_valid(paths: list[Path]) -> tuple[Path | None, int | None]:
    """The readable checkpoint with the highest step among `paths` (resume falls back to it
    when a newer one is damaged, never silently to step 0), and that step. A damaged file is
    named on stderr; if every existing file is damaged, the first error is raised."""
    found, errors = [], []
    for p in paths:
        if p.is_file():
            try:  # memory-mapped: reads the step without loading the tensors
                found.append((load(p, mmap=True)["global_step"], p))
            except CheckpointError as e:
                errors.append(e)
    if errors and not found:
        raise errors[0]
    for e in errors:
        print(f"warning: {e}; resuming from the newest valid checkpoint instead",
              file=sys.stderr, flush=True)
    if not found:
        return None, None
    step, path = max(found)
    return path, step


def net_state(state_dict: dict) -> dict:
    """The network's weights in a task's state dict (the task holds the net as `net`)."""
    return {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}


def state_dict(ckpt: dict, path: str | Path) -> dict:
    """A loaded checkpoint's state dict, or a refusal naming the file."""
    saved = ckpt.get("state_dict")
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict (not a reslab checkpoint)")
    return saved


def check_fits(path: Path, module: torch.nn.Module) -> None:
    """Refuse, before anything is written, a checkpoint whose weights do not fit `module` (the
    run's config.yaml was edited, or the checkpoint is another model's)."""
    saved = state_dict(load(path, mmap=True), path)
    own = module.state_dict()
    missing = [k for k in own if k not in saved]
    other = [k for k in saved if k not in own or getattr(saved[k], "shape", None) != own[k].shape]
    if missing or other:
        key = (missing or other)[0]
        raise CheckpointError(f"checkpoint {path} does not fit the run's model ({key} "
                              f"{'is missing' if missing else 'differs'}; was config.yaml edited?)")


def save(obj: dict, path: str | Path) -> None:
    """Atomically (a crash mid-write leaves the previous checkpoint intact); a full disk or a
    permission problem is an OSError that names the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda f: torch.save(obj, f))
    except OSError as e:
        raise OSError(e.errno, f"cannot write checkpoint {path}: {e.strerror or e}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and weights-only reads."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load(path, map_location or "cpu")
