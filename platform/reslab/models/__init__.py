"""The model zoo: plain PyTorch modules built by name from the registry."""

from __future__ import annotations

from torch import nn

from reslab.models import resnet, sr
from reslab.models.blocks import SHORTCUTS, BasicBlock, Bottleneck
from reslab.models.profile import count_macs, count_params
from reslab.models.resnet import MODELS, ResNet
from reslab.models.sr import EDSR, VDSR

__all__ = ["MODELS", "SHORTCUTS", "BasicBlock", "Bottleneck", "ResNet", "VDSR", "EDSR", "build_model",
           "count_macs", "count_params", "depth_error", "list_models"]


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. `build_model("resnet56", shortcut="B", num_classes=100)`."""
    return MODELS.get(name).builder(**kwargs)


def depth_error(family: str, depth: int) -> str | None:
    """Why `depth` is not valid for the model family, as a sentence fragment, or None."""
    if family in sr.MIN_DEPTH:
        return sr.depth_error(family, depth)
    return resnet.depth_error(family, depth)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)

