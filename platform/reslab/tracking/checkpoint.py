"""Checkpoint files: written atomically, read weights-only, refused with a sentence when broken.

A checkpoint holds plain types only (tensors, numbers, strings, lists, dicts), so
`torch.load(weights_only=True)` reads it and a crafted pickle cannot run code."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from reslab.errors import UserError, reason
from reslab.fileio import write_atomic


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupted or carries code."""


def _refused(message: str) -> str:
    """Why torch's weights-only unpickler refused a file: "Unsupported operand" is a byte no
    pickle holds (a JSON, ONNX or text file); anything else it names is code it would import."""
    if "Unsupported operand" in message:
        return "it is not a PyTorch checkpoint (a JSON, ONNX or text file?)"
    if "weights_only" in message or "Unsupported" in message:
        return "it holds objects other than tensors and plain values (refused: loading it " \
               "could run code)"
    return "it is corrupted"


def load(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """`torch.load(weights_only=True)` of a checkpoint or state dict (a dict), with every failure
    turned into one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"cannot load checkpoint {path}: {_refused(str(e))}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.strerror or reason(e)})") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not one
        raise CheckpointError(f"cannot load checkpoint {path}: it is truncated or corrupted "
                              f"({reason(e).split('. ')[0][:160]})") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint {path} holds {_kind(loaded)}, not a checkpoint or "
                              "state dict")
    return loaded


def newest_valid(paths: list[Path]) -> tuple[Path | None, int | None]:
    """The checkpoint training can continue from with the highest step among `paths` (resume
    falls back to it when a newer one is damaged, never silently to step 0), and that step. A
    damaged file is named on stderr; if every existing file is damaged, the first error is
    raised."""
    found, errors = [], []
    for p in paths:
        if p.exists():
            try:  # memory-mapped: reads the step without loading the tensors
                found.append((resumable(load(p, mmap=True), p), p))
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


# What Lightning reads to continue training, as reslab writes it: a type, a list of one layout,
# or a dict of required entries. A missing or mistyped entry would fail deep inside Trainer.fit,
# after the attempt has begun (a completed run then turned `failed`).
RESUME_LAYOUT = {
    "pytorch-lightning_version": re.compile(r"\d+(\.\d+)*[\w.+-]*"),  # Lightning parses it
    "optimizer_states": [{"state": dict, "param_groups": [{"params": list}]}],
    "lr_schedulers": [{"lr_lambdas": [dict], "last_epoch": int, "base_lrs": list}],  # LambdaLR
    "loops": {"fit_loop": {"state_dict": dict, "epoch_progress": dict,
                           "epoch_loop.batch_progress": dict}},
    "callbacks": dict,
}


def resumable(ckpt: dict, path: str | Path) -> int:
    """The step of a checkpoint training can continue from, else a refusal naming the file and
    what is wrong."""
    step = global_step(ckpt, path)
    state_dict(ckpt, path)
    if problem := misfit(ckpt, RESUME_LAYOUT, ""):
        raise CheckpointError(f"checkpoint {path} cannot be resumed from: {problem} (a "
                              "weights-only or damaged file)")
    return step


def misfit(value: Any, layout: Any, where: str) -> str | None:
    """Where `value` departs from `layout` (see RESUME_LAYOUT), in words; None if it fits."""
    if value is None:
        return f"{where} is missing"
    if isinstance(layout, re.Pattern):
        return None if isinstance(value, str) and layout.fullmatch(value) else \
            f"{where} is {value!r}"
    if isinstance(layout, dict):
        if not isinstance(value, dict):
            return f"{where} is {_kind(value)}, not a dict"
        return next((p for k, sub in layout.items()
                     if (p := misfit(value.get(k), sub, f"{where}.{k}".lstrip(".")))), None)
    if isinstance(layout, list):
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, not a list"
        return next((p for i, v in enumerate(value) if (p := misfit(v, layout[0], f"{where}[{i}]"))),
                    None)
    return None if isinstance(value, layout) else f"{where} is {_kind(value)}"


def global_step(ckpt: dict, path: str | Path) -> int:
    """The optimizer steps a Lightning checkpoint was saved at."""
    step = ckpt.get("global_step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        has = f"global_step={step!r}" if "global_step" in ckpt else "no global_step"
        raise CheckpointError(f"checkpoint {path} has {has}, not a step count (not a Lightning "
                              "checkpoint, or damaged)")
    return step


def _kind(value: Any) -> str:
    name = type(value).__name__
    return "missing" if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def net_state(state_dict: dict) -> dict:
    """The network's weights in a task's state dict (the task holds the net as `net`)."""
    return {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}


def state_dict(ckpt: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """A loaded checkpoint's state dict, or a refusal naming the file."""
    if "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} holds no state_dict (not a reslab checkpoint)")
    return tensors(ckpt["state_dict"], path)


def tensors(state: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """`state` if it maps names to tensors (a state dict), else a refusal naming the file."""
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a state_dict that is "
                              f"{_kind(state)}, not a dict of tensors")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {path} is not a state dict: its entry {k!r} is "
                                  f"{_kind(v)}, not a tensor")
    return state


def check_fits(path: Path, module: torch.nn.Module) -> None:
    """Refuse, before anything is written, a checkpoint whose weights do not fit `module` (the
    run's config.yaml was edited, or the checkpoint is another model's)."""
    saved = state_dict(load(path, mmap=True), path)
    own = module.state_dict()
    missing = [k for k in own if k not in saved]
    other = [k for k in saved if k not in own or saved[k].shape != own[k].shape]
    if missing or other:
        keys = missing or other  # the network's own tensors name the problem best
        key = next((k for k in keys if k.startswith("net.")), keys[0])
        raise CheckpointError(f"checkpoint {path} does not fit the run's model ({len(keys)} "
                              f"tensors {'missing' if missing else 'differ'}, e.g. {key}; was "
                              "config.yaml edited?)")


def save(obj: dict, path: str | Path) -> None:
    """Atomically (a crash mid-write leaves the previous checkpoint intact); a full disk or a
    permission problem is an OSError that names the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            write_atomic(path, lambda f: torch.save(obj, f))
        except RuntimeError as e:  # torch's zip writer hides a full disk behind its own error
            raise e.__context__ if isinstance(e.__context__, OSError) else e from None
    except OSError as e:
        raise OSError(e.errno, f"cannot write checkpoint {path}: {e.strerror or e}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and weights-only reads."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load(path, map_location or "cpu")
