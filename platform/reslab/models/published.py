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


def is_akamaster(state: dict) -> bool:
    """A state dict saved from that reproduction's DataParallel-wrapped ResNet."""
    return f"{PREFIX}linear.weight" in state and f"{PREFIX}conv1.weight" in state


def from_akamaster(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Its state dict (unwrapped from `state_dict`) with reslab's names and channel layout."""
    state = {rename(k): v for k, v in state.items()}
    if any(".downsample." in k for k in state):  # option B: projections, no padding to undo
        return state
    perms = stream_permutations(state)
    out = {}
    for key, value in state.items():
        if key == "fc.weight":
            value = value[:, perms[-1]]
        elif m := BLOCK.match(key):
            stage, index = int(m[1]), int(m[2])
            own = perms[stage - 1]
            reads = perms[stage - 2] if index == 0 and stage > 1 else own
            param = key[m.end():]
            if param == "conv1.weight":
                value = value[:, reads]
            elif param == "conv2.weight" or (param.startswith("bn2.") and value.dim() == 1):
                value = value[own]
        out[key] = value
    return out


def rename(key: str) -> str:
    key = key.removeprefix(PREFIX)
    key = re.sub(r"^linear\.", "fc.", key)
    return key.replace(".shortcut.", ".downsample.")


def stream_permutations(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per stage, for each of reslab's stream channels, the published net's channel: the
    identity sits at offset pad = (width - previous width) / 2 there, at 0 here."""
    widths = []
    while f"layer{len(widths) + 1}.0.conv2.weight" in state:
        widths.append(state[f"layer{len(widths) + 1}.0.conv2.weight"].shape[0])
    perms = [torch.arange(widths[0])]
    for prev, width in zip(widths, widths[1:]):
        pad = (width - prev) // 2
        perms.append(torch.cat([pad + perms[-1], torch.arange(pad),
                                torch.arange(pad + prev, width)]))
    return perms
