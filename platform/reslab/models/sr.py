"""Residual learning for single-image super-resolution: every network maps a low-resolution image
(N, C, h, w) to (N, C, scale*h, scale*w).

VDSR (Kim et al. 2016) upsamples bicubically, then a deep plain stack of 3x3 conv + ReLU predicts
either the residual (`global_residual=True`: output = bicubic + prediction) or the whole image —
the comparison that motivates residual learning ("the generated images are even worse than the
input images" without it). EDSR (Lim et al. 2017) works at low resolution with residual blocks
without BatchNorm, a long skip over the body, and pixel-shuffle upsampling; `shortcut="none"`
removes the blocks' identity shortcuts (a plain network of the same depth). Both take 3 (RGB) or
1 (luma Y) image channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reslab.models.catalog import SR_SCALES as SCALES
from reslab.models.catalog import SR_SHORTCUTS, depth_error

BASE_WIDTH = 64  # features per layer at model.width = 1 (VDSR and the EDSR baseline)
# EDSR's reference code subtracts the DIV2K training set's RGB mean (its `rgb_mean`) before the
# head and adds it back after the tail; for luma, the Y of that mean (BT.601, as data.sr.ycbcr).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
DIV2K_Y_MEAN = (16 + 65.481 * 0.4488 + 128.553 * 0.4371 + 24.966 * 0.4040) / 255  # 0.4379


def conv(inplanes: int, planes: int) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, padding=1)


def features(width: float) -> int:
    return max(1, round(BASE_WIDTH * width))


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical baseline every SR result is measured against (and VDSR's input)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def _he_init(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


class VDSR(nn.Module):
    """`depth` conv layers (ReLU between) on the bicubic-upsampled input; `zero_init_residual`
    zeroes the last layer, so a global-residual VDSR starts exactly at bicubic."""

    def __init__(self, depth: int = 20, width: float = 1.0, scale: int = 2, in_channels: int = 3,
                 global_residual: bool = True, zero_init_residual: bool = False):
        super().__init__()
        if err := depth_error("vdsr", depth):
            raise ValueError(err)
        ch = features(width)
        layers: list[nn.Module] = [conv(in_channels, ch), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv(ch, ch), nn.ReLU(inplace=True)]
        layers.append(conv(ch, in_channels))
        self.body = nn.Sequential(*layers)
        self.scale, self.global_residual = scale, global_residual
        _he_init(self)
        if zero_init_residual:
            nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = bicubic(x, self.scale)
        out = self.body(up)
        return up + out if self.global_residual else out


class MeanShift(nn.Module):
    """Adds `sign` x the dataset mean per channel: a constant (a buffer, not a parameter, and
    not in the state dict), as EDSR's `sub_mean`/`add_mean` with their frozen weights."""

    def __init__(self, channels: int, sign: int):
        super().__init__()
        mean = DIV2K_RGB_MEAN if channels == 3 else (DIV2K_Y_MEAN,) * channels
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, channels, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class ResBlock(nn.Module):
    """conv-ReLU-conv without BatchNorm (EDSR §3.1), scaled by `res_scale` before the addition."""

    def __init__(self, planes: int, shortcut: str = "identity", res_scale: float = 1.0):
        super().__init__()
        self.conv1, self.conv2 = conv(planes, planes), conv(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut, self.res_scale = shortcut, res_scale

    def branch_output(self) -> nn.Module:
        """The residual branch's response F(x), for the signal-propagation diagnostics."""
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x))) * self.res_scale
        return out if self.shortcut == "none" else x + out


def upsampler(planes: int, scale: int) -> nn.Sequential:
    """Sub-pixel convolution (pixel shuffle): one x3 step, or x2 steps for 2 and 4."""
    if scale not in SCALES:
        raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
    steps = [3] if scale == 3 else [2] * (scale // 2)
    layers: list[nn.Module] = []
    for s in steps:
        layers += [conv(planes, planes * s * s), nn.PixelShuffle(s)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """The dataset mean subtracted, a head conv, `depth` residual blocks + a conv (the body), the
    long skip around the body (`global_residual`), pixel-shuffle upsampling, a tail conv back to
    image channels and the mean added back. `res_scale` scales each residual branch before its
    addition (EDSR §3.2: 0.1 keeps the 32-block, 256-feature model stable; 1.0 the baseline)."""

    def __init__(self, depth: int = 16, width: float = 1.0, scale: int = 2, in_channels: int = 3,
                 shortcut: str = "identity", global_residual: bool = True,
                 zero_init_residual: bool = False, res_scale: float = 1.0):
        super().__init__()
        if shortcut not in SR_SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SR_SHORTCUTS)}, got {shortcut!r}")
        if err := depth_error("edsr", depth):
            raise ValueError(err)
        ch = features(width)
        self.sub_mean, self.add_mean = MeanShift(in_channels, -1), MeanShift(in_channels, 1)
        self.head = conv(in_channels, ch)
        self.body = nn.Sequential(*[ResBlock(ch, shortcut, res_scale) for _ in range(depth)],
                                  conv(ch, ch))
        self.upsample = upsampler(ch, scale)
        self.tail = conv(ch, in_channels)
        self.global_residual = global_residual
        # PyTorch's default init, as EDSR's reference code: He init without BatchNorm lets the
        # responses grow block after block (the outputs start far off the image scale).
        if zero_init_residual:
            for b in self.blocks():
                nn.init.zeros_(b.conv2.weight)

    def blocks(self) -> list[ResBlock]:
        return [m for m in self.body if isinstance(m, ResBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = self.body(x)
        if self.global_residual:
            out = out + x
        return self.add_mean(self.tail(self.upsample(out)))
