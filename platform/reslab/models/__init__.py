"""The model zoo: plain PyTorch modules built by name. Importing this package does not import
torch: the catalogue (`ModelInfo` per name) is enough to list and validate; `build_model`
imports the family's module."""

from __future__ import annotations

import importlib
from typing import Any

from reslab.models.catalog import MODELS, ModelInfo, depth_error

__all__ = ["MODELS", "ModelInfo", "build_model", "depth_error", "info", "list_models"]


def info(name: str) -> ModelInfo:
    return MODELS.get(name)


def build_model(name: str, **kwargs: Any):
    """Build a registered model, e.g. `build_model("resnet56", shortcut="B", num_classes=100)`; a
    preset's fixed values (depth, shortcut) are defaults the keyword arguments may override."""
    entry = MODELS.get(name)
    module, attr = entry.builder.split(":")
    builder = getattr(importlib.import_module(f"reslab.models.{module}"), attr)
    return builder(**{**entry.fixed, **kwargs})


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)
