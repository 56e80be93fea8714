"""Published CIFAR ResNet checkpoints in reslab's layout: akamaster/pytorch_resnet_cifar10, the
most used reproduction of He et al. 2015 (trained ResNet-20 ... ResNet-1202).

Its files hold `{"state_dict": DataParallel(net).state_dict(), "best_prec1": ...}`: every key
starts with `module.`, the classifier is `linear`, option-B projections are `shortcut.0/1`. Its
option A pads `planes // 4` zero channels on *both* sides of the subsampled identity, where
reslab appends them after it (as fb.resnet.torch does). The networks are the same up to a
permutation of the residual stream's channels at each stage that widens, so converting permutes
every tensor that writes the stream (each block's last conv and BN) or reads it (each block's
first conv, the classifier); the outputs are then equal."""

from __future__ import annotations

import re

import torch

PREFIX = "module."
BLOCK = re.compile(r"layer(\d+)\.(\d+)\.")


class LayoutError(ValueError):
    """A file that looks like that reproduction's but does not hold its network."""


def is_akamaster(state: dict) -> bool:
    """A state dict saved from that reproduction's DataParallel-wrapped ResNet."""
    return f"{PREFIX}linear.weight" in state and f"{PREFIX}conv1.weight" in state


def from_akamaster(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Its state dict (unwrapped from `state_dict`) with reslab's names and channel layout."""
    state = {rename(k): v for k, v in state.items()}
    if any(".downsample." in k for k in state):  # option B: projections, no padding to undo
        return state
    perms = stream_permutations(state)
    return {key: permuted(key, value, perms) for key, value in state.items()}


def permuted(key: str, value: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    """`value` with the stream channels it reads or writes in reslab's order."""
    if key == "fc.weight":
        return reindex(key, value, 1, perms[-1])
    if not (m := BLOCK.match(key)) or int(m[1]) > len(perms):
        return value
    stage, index = int(m[1]), int(m[2])
    own = perms[stage - 1]
    reads = perms[stage - 2] if index == 0 and stage > 1 else own
    param = key[m.end():]
    if param == "conv1.weight":
        return reindex(key, value, 1, reads)
    if param == "conv2.weight" or (param.startswith("bn2.") and value.dim() == 1):
        return reindex(key, value, 0, own)
    return value


def reindex(key: str, value: torch.Tensor, dim: int, perm: torch.Tensor) -> torch.Tensor:
    if value.dim() <= dim or value.shape[dim] != len(perm):
        raise LayoutError(f"{key} has shape {list(value.shape)}, not {len(perm)} channels in "
                          f"dimension {dim} as its stage's width says")
    return value.index_select(dim, perm)


def rename(key: str) -> str:
    key = key.removeprefix(PREFIX)
    key = re.sub(r"^linear\.", "fc.", key)
    return key.replace(".shortcut.", ".downsample.")


def stream_permutations(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per stage, for each of reslab's stream channels, the published net's channel: the
    identity sits at offset pad = (width - previous width) / 2 there, at 0 here."""
    widths = []
    while (w := state.get(f"layer{len(widths) + 1}.0.conv2.weight")) is not None:
        if w.dim() != 4:
            raise LayoutError(f"layer{len(widths) + 1}.0.conv2.weight has shape {list(w.shape)}, "
                              "not a convolution's 4 dimensions")
        widths.append(w.shape[0])
    if not widths:
        raise LayoutError("it has no layer1.0.conv2.weight (no residual stage)")
    perms = [torch.arange(widths[0])]
    for stage, (prev, width) in enumerate(zip(widths, widths[1:]), start=2):
        if width < prev or (width - prev) % 2:
            raise LayoutError(f"stage {stage} is {width} channels wide after {prev}: option A "
                              "pads an even number of channels")
        pad = (width - prev) // 2
        perms.append(torch.cat([pad + perms[-1], torch.arange(pad),
                                torch.arange(pad + prev, width)]))
    return perms
