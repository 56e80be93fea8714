"""Starting from pretrained weights: torchvision's ImageNet weights (through torchvision's own
weights API and its cache under TORCH_HOME), or any reslab run, checkpoint or plain state dict.
What `model.weights` names is one typed record, `Source`, made once from the config
(`resolve`); the build reads its preprocessing and its weights from it, the export its
preprocessing.

Loading is weights-only and strict except for the classifier `fc`, which is replaced (and said
so) when the number of classes differs. Freezing turns off gradients up to a stage and keeps the
frozen BatchNorm layers in eval mode (their statistics are part of what was learned)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from reslab.config.schema import Config
from reslab.errors import UserError
from reslab.models import ModelInfo, published
from reslab.tracking import checkpoint
from reslab.tracking.records import is_torchvision_name, weights_file

STEM = ("conv1", "bn1")


@dataclass(frozen=True)
class Source:
    """What model.weights names: nothing (`none`), torchvision's ImageNet weights
    (`torchvision`: its weights enum entry, which carries its preprocessing) or a file (`file`:
    a reslab run's checkpoint, a plain state dict or a published CIFAR checkpoint, which one is
    seen when it is read). The enum entry and the file are looked up on first use and kept, so
    each refusal comes where it always has: a file's when the weights are loaded, the entry's
    before the data for image folders (their preprocessing) and when loading for the rest."""

    spec: str                 # model.weights as written
    kind: str                 # none | torchvision | file
    model: str                # model.name and model.depth: torchvision's entry is per architecture
    depth: int | None

    @cached_property
    def torchvision(self) -> Any:
        """The torchvision weights enum entry (kind torchvision)."""
        return torchvision_weights(self.model, self.depth, self.spec)

    @cached_property
    def path(self) -> Path:
        """The file the weights are read from (kind file): a run's best.ckpt, else last.ckpt;
        a run-name folder's newest completed run's."""
        return weights_file(self.spec)

    def preprocessing(self) -> dict | None:
        """torchvision weights' own normalisation and resize (what their `transforms()` does);
        None for the others: a file's network was trained on the data's own statistics."""
        if self.kind != "torchvision":
            return None
        tf = self.torchvision.transforms()
        return {"mean": list(tf.mean), "std": list(tf.std), "resize_size": tf.resize_size[0]}


def resolve(cfg: Config) -> Source:
    return source(str(cfg.model.weights), cfg.model.name, cfg.model.depth)


def source(spec: str, model: str, depth: int | None = None) -> Source:
    kind = "none" if spec == "none" else "torchvision" if is_torchvision_name(spec) else "file"
    return Source(spec, kind, model, depth)


def torchvision_weights(model_name: str, depth: int | None, spec: str):
    """The torchvision weights enum entry for an ImageNet-family model, e.g. resnet50 + V2."""
    from torchvision.models import get_model_weights

    arch = f"resnet{depth}" if depth else model_name
    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError):
        raise UserError(f"model.weights={spec} needs an ImageNet-family model (resnet18 ... "
                        f"resnet152), got {arch}") from None
    try:
        return enum[spec]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise UserError(f"model.weights={spec} is not a torchvision weights name for {arch} "
                        f"(choose from {names})") from None


def cache_path(weights) -> Path:
    """Where torchvision's loader looks first: $TORCH_HOME/hub/checkpoints/<file of the URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def load_torchvision(weights) -> dict:
    path = cache_path(weights)
    if not path.is_file():
        # Without network torchvision would fail deep in urllib: say what to do instead.
        try:
            socket.create_connection((urlparse(weights.url).hostname, 443), timeout=5).close()
        except OSError:
            raise UserError(f"torchvision weights {weights} are not in the cache ({path}) and "
                            "there is no network: on a machine with internet run `python -c "
                            f"\"import torchvision; torchvision.models.get_weight('{weights}')"
                            ".get_state_dict()\"` with the same TORCH_HOME") from None
    return weights.get_state_dict(progress=False, weights_only=True, check_hash=False)


def load_file(path: Path, spec: str) -> dict:
    """The network weights in `path`, the file model.weights=`spec` names: a Lightning
    checkpoint, a plain state dict, or a published CIFAR checkpoint (converted by
    `reslab.models.published`)."""
    saved = checkpoint.load(path)
    # A Lightning checkpoint or a published file wraps the weights in `state_dict`.
    state = checkpoint.state_dict(saved, path) if "state_dict" in saved else \
        checkpoint.tensors(saved, path)
    if published.is_akamaster(state):
        try:
            return published.from_akamaster(state)
        except published.LayoutError as e:
            raise UserError(f"{named(spec, path)} has akamaster/pytorch_resnet_cifar10's keys "
                            f"but not its network: {e}") from None
    return checkpoint.net_state(state) if any(k.startswith("net.") for k in state) else state


def load_into(net: nn.Module, src: Source, info: ModelInfo) -> None:
    """Load the weights `src` names into `net`; one printed line says when the classifier was
    replaced."""
    spec = src.spec
    if src.kind == "none":
        return
    if src.kind == "torchvision":
        source, state = f"model.weights={spec}", load_torchvision(src.torchvision)
    else:
        path = src.path
        source, state = named(spec, path), load_file(path, spec)
        if path != Path(spec):  # a folder: which run's weights (a run-name folder's newest)
            print(f"model.weights={spec}: {path}", flush=True)
    own = net.state_dict()
    head = [k for k in own if info.head and k.startswith(f"{info.head}.")]
    if (old_classes := other_classes(state, own, head)) is not None:
        state = {k: v for k, v in state.items() if k not in head}  # a fresh classifier
    missing = [k for k in own if k not in state and (old_classes is None or k not in head)]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    for what, keys in (("shape differs", mismatched), ("missing in the weights", missing),
                       ("not in the model", unexpected)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
            raise UserError(f"{source} does not fit model {info.name}: {what}: {shown}")
    net.load_state_dict(state, strict=old_classes is None)
    if old_classes is not None:
        print(f"classifier {info.head} replaced: the weights have {old_classes} classes, the "
              f"data {own[f'{info.head}.weight'].shape[0]}", flush=True)


def named(spec: str, path: Path) -> str:
    """model.weights=SPEC, with the file it names where that is another path."""
    return f"model.weights={spec}" + (f" ({path})" if Path(spec) != path else "")


def other_classes(state: dict, own: dict, head: list[str]) -> int | None:
    """The weights' number of classes when only the classifier's shape differs from the model's
    (fine-tuning on other classes), else None."""
    differ = [k for k in own if k in state and own[k].shape != state[k].shape]
    if differ and set(differ) <= set(head):
        return state[differ[0]].shape[0] if state[differ[0]].dim() else 0
    return None


def freeze(net: nn.Module, level: str, info: ModelInfo) -> None:
    """Turn off gradients for the stem and the stages up to and including `level` (or all but
    the classifier: `backbone`); the task keeps BatchNorm layers without trainable parameters
    in eval mode (their statistics are part of what was learned)."""
    if level == "none":
        return
    if level == "backbone":
        names = [n for n, _ in net.named_children() if n != info.head]
    elif level == "stem" or level in info.stages:
        names = [*STEM, *info.stages[: info.stages.index(level) + 1 if level != "stem" else 0]]
    else:
        raise UserError(f"model.freeze={level} does not exist in model {info.name} (it has "
                        f"{', '.join(['stem', *info.stages, 'backbone'])})")
    for n in names:
        for p in getattr(net, n).parameters():
            p.requires_grad_(False)
