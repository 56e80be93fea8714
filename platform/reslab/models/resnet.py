"""The configurable ResNet: one class for the CIFAR (6n+2) and ImageNet families (He et al. 2015,
§4.2 and Table 1). Every variant is data — block, layers, widths, stem, shortcut — and the
registered presets are one line each."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reslab.models.blocks import BasicBlock, Bottleneck
from reslab.models.catalog import IMAGENET_DEPTHS, SHORTCUTS, depth_error

CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_LAYERS = dict(zip(IMAGENET_DEPTHS, [
    (BasicBlock, (2, 2, 2, 2)),
    (BasicBlock, (3, 4, 6, 3)),
    (Bottleneck, (3, 4, 6, 3)),
    (Bottleneck, (3, 4, 23, 3)),
    (Bottleneck, (3, 8, 36, 3)),
]))


class ResNet(nn.Module):
    """Stem, then len(layers) stages of residual blocks (the first of each stage after the first
    halves the resolution), global average pooling and a linear classifier `fc`.

    Attribute names match torchvision's ResNet, so their state dicts load unchanged."""

    def __init__(self, block: type[nn.Module], layers: Sequence[int], widths: Sequence[int],
                 stem: str = "imagenet", shortcut: str = "B", preact: bool = False,
                 width: float = 1.0, in_channels: int = 3, num_classes: int = 1000,
                 zero_init_residual: bool = False):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        self.preact = preact
        stem_width = widths[0]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Pre-activation nets normalise inside each block and once more before pooling.
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_width
        for i, (planes, n) in enumerate(zip(widths, layers)):
            planes = max(1, round(planes * width))
            stage = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(block(inplanes, planes, stride, shortcut=shortcut, preact=preact))
                inplanes = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(layers)
        self.final_bn = nn.BatchNorm2d(inplanes) if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He init (§3.4, ref. [13]); BN starts as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch starts at zero, so every block starts as the identity
            # (Goyal et al. 2017).
            for b in self.blocks():
                nn.init.zeros_(b.last_bn().weight)

    def blocks(self) -> list[nn.Module]:
        return [b for i in range(self.num_stages) for b in getattr(self, f"layer{i + 1}")]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if not self.preact:
            x = self.relu(self.bn1(x))
        x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.preact:
            x = self.relu(self.final_bn(x))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def cifar_resnet(depth: int = 20, shortcut: str | None = None, block: str | None = None,
                 **kwargs) -> ResNet:
    """CIFAR ResNet: 3x3 stem, 3 stages of n blocks. Basic blocks (2015, §4.2): widths 16/32/64,
    depth 6n+2, option A by default. Bottleneck blocks (2016, ResNet-164/1001): the same widths
    expanded 4x (64/128/256), depth 9n+2, projection shortcuts (B) by default."""
    if err := depth_error("cifar", depth, block):
        raise ValueError(err)
    kwargs.setdefault("num_classes", 10)
    bottleneck = block == "bottleneck"
    n = (depth - 2) // (9 if bottleneck else 6)
    return ResNet(Bottleneck if bottleneck else BasicBlock, [n] * 3, CIFAR_WIDTHS, stem="cifar",
                  shortcut=shortcut or ("B" if bottleneck else "A"), **kwargs)


def imagenet_resnet(depth: int = 50, shortcut: str = "B", **kwargs) -> ResNet:
    """ImageNet ResNet (Table 1): 7x7 stem + max-pool, 4 stages, Basic (18/34) or Bottleneck
    (50+): the depth decides the block."""
    if err := depth_error("imagenet", depth):
        raise ValueError(err)
    block, layers = IMAGENET_LAYERS[depth]
    return ResNet(block, layers, IMAGENET_WIDTHS, stem="imagenet", shortcut=shortcut, **kwargs)
