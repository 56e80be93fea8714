"""Residual blocks with the paper's shortcut options (He et al. 2015, §3.3) and pre-activation
variants (He et al. 2016). Names follow torchvision so state dicts are interchangeable."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: identity with stride-2 subsampling and zero-padded new channels (no parameters)."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.extra, self.stride = planes - inplanes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def make_shortcut(shortcut: str, inplanes: int, planes: int, stride: int, preact: bool):
    """The `downsample` module of a block, or None for an identity (or absent) shortcut.

    A: parameter-free where the shape changes; B: 1x1 projection where the shape changes;
    C: a projection on every block. Pre-activation projections act on the already normalised
    input, so they carry no BN of their own (He et al. 2016, Fig. 4e)."""
    changes = stride != 1 or inplanes != planes
    if shortcut == "none" or (shortcut in ("A", "B") and not changes):
        return None
    if shortcut == "A":
        return PadShortcut(inplanes, planes, stride)
    if preact:
        return conv1x1(inplanes, planes, stride)
    return nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (§3.3). `shortcut='none'` makes the plain-network counterpart."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 preact: bool = False):
        super().__init__()
        self.shortcut, self.preact = shortcut, preact
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(inplanes if preact else planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, inplanes, planes, stride, preact)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            return self.conv2(self.relu(self.bn2(self.conv1(x))))
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _combine(self, x)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def branch_output(self) -> nn.Module:
        """The layer whose output is the residual branch's response F(x) (Fig. 7)."""
        return self.conv2 if self.preact else self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (§4.1, ResNet-50/101/152); stride on the 3x3 as torchvision."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 preact: bool = False):
        super().__init__()
        self.shortcut, self.preact = shortcut, preact
        out = planes * self.expansion
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(inplanes if preact else planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out)
        self.bn3 = nn.BatchNorm2d(planes if preact else out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, inplanes, out, stride, preact)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            y = self.conv2(self.relu(self.bn2(self.conv1(x))))
            return self.conv3(self.relu(self.bn3(y)))
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _combine(self, x)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def branch_output(self) -> nn.Module:
        return self.conv3 if self.preact else self.bn3


def _combine(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """y = F(x) + shortcut(x), then ReLU (post-activation); pre-activation blocks apply BN-ReLU
    first, feed the activated input to both paths where projecting, and add without a ReLU."""
    if block.preact:
        act = block.relu(block.bn1(x))
        identity = x if block.downsample is None else block.downsample(act)
        out = block.residual(act)
        return out if block.shortcut == "none" else out + identity
    out = block.residual(x)
    if block.shortcut != "none":
        out = out + (x if block.downsample is None else block.downsample(x))
    return block.relu(out)
