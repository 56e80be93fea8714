"""The model zoo: plain PyTorch modules built by name from the registry."""

from __future__ import annotations

from torch import nn

from reslab.models.blocks import SHORTCUTS, BasicBlock, Bottleneck
from reslab.models.profile import count_macs, count_params
from reslab.models.resnet import MODELS, ResNet, depth_error

__all__ = ["MODELS", "SHORTCUTS", "BasicBlock", "Bottleneck", "ResNet", "build_model",
           "count_macs", "count_params", "depth_error", "list_models"]


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. `build_model("resnet56", shortcut="B", num_classes=100)`."""
    return MODELS.get(name).builder(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)
