"""What the model zoo holds, without importing torch: one typed `ModelInfo` per registered name
(family, task, the config keys its builder takes, input size, what a preset fixes) and the depth
rules of each family. Listing, validating a config and `reslab config` need only this; the
networks themselves are built by `reslab.models.build`, which imports the family's module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reslab.registry import Registry

SHORTCUTS = ("A", "B", "C", "none")      # He et al. 2015 options A/B/C; none = the plain net
SR_SHORTCUTS = ("identity", "none")
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)  # Table 1
SR_SCALES = (2, 3, 4)                    # super-resolution upscaling factors
SR_MIN_DEPTH = {"vdsr": 3, "edsr": 1}   # vdsr: conv layers; edsr: residual blocks
HEAD = "fc"  # the classifier of every ResNet (torchvision's name), replaced when fine-tuning
RESNET_OPTIONS = ("depth", "shortcut", "preact", "width", "zero_init_residual")
CIFAR_INPUT, IMAGENET_INPUT, SR_INPUT = (3, 32, 32), (3, 224, 224), (3, 64, 64)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str                         # cifar | imagenet | vdsr | edsr
    task: str                           # classification | super_resolution
    builder: str                        # `module:function` under reslab.models
    options: tuple[str, ...]            # the model.* config keys the builder takes
    shortcuts: tuple[str, ...]          # allowed model.shortcut values
    input_size: tuple[int, int, int]    # (C, H, W) for `reslab models` (MACs)
    default_depth: int                  # the depth when the config leaves it unset
    fixed: dict[str, Any] = field(default_factory=dict)  # what a preset sets (depth, shortcut)
    stages: tuple[str, ...] = ()        # freezable stages, in order (model.freeze)
    head: str | None = None             # the classifier, replaced when the classes differ

    @property
    def depth(self) -> int | None:
        """The preset's depth, or None for a family (depth is a config value)."""
        return self.fixed.get("depth")

    @property
    def shortcut(self) -> str | None:
        return self.fixed.get("shortcut", self.shortcuts[0] if self.shortcuts else None)


MODELS: Registry[ModelInfo] = Registry("model")


def register(info: ModelInfo) -> None:
    MODELS.register(info.name, info)


def _resnet(name: str, family: str, shortcut: str, **fixed: Any) -> ModelInfo:
    cifar = family == "cifar"
    return ModelInfo(
        name, family, "classification", f"resnet:{family}_resnet", RESNET_OPTIONS,
        SHORTCUTS, CIFAR_INPUT if cifar else IMAGENET_INPUT, 20 if cifar else 50,
        {"shortcut": shortcut, **fixed},
        stages=("layer1", "layer2", "layer3") if cifar else ("layer1", "layer2", "layer3", "layer4"),
        head=HEAD)


register(_resnet("cifar_resnet", "cifar", "A"))
register(_resnet("imagenet_resnet", "imagenet", "B"))
for _d in (20, 32, 44, 56, 110, 1202):
    register(_resnet(f"resnet{_d}", "cifar", "A", depth=_d))
for _d in (20, 32, 44, 56, 110):
    register(_resnet(f"plain{_d}", "cifar", "none", depth=_d))
for _d in IMAGENET_DEPTHS:
    register(_resnet(f"resnet{_d}", "imagenet", "B", depth=_d))
register(ModelInfo("vdsr", "vdsr", "super_resolution", "sr:VDSR",
                   ("depth", "width", "global_residual", "zero_init_residual"), (), SR_INPUT, 20))
register(ModelInfo("edsr", "edsr", "super_resolution", "sr:EDSR",
                   ("depth", "width", "shortcut", "global_residual", "zero_init_residual"),
                   SR_SHORTCUTS, SR_INPUT, 16, {}))


def depth_error(family: str, depth: int) -> str | None:
    """Why `depth` is not valid for the model family, as a sentence fragment, or None."""
    if family == "cifar":
        if depth >= 8 and (depth - 2) % 6 == 0:
            return None
        near = max(8, 6 * round((depth - 2) / 6) + 2)
        return f"depth must be 6n+2 for cifar stems, got {depth} (did you mean {near}?)"
    if family == "imagenet" and depth not in IMAGENET_DEPTHS:
        allowed = ", ".join(map(str, IMAGENET_DEPTHS))
        return f"depth must be one of {allowed} for the imagenet family, got {depth}"
    if family in SR_MIN_DEPTH and depth < SR_MIN_DEPTH[family]:
        unit = "conv layers" if family == "vdsr" else "residual blocks"
        return f"depth ({unit}) must be at least {SR_MIN_DEPTH[family]} for {family}, got {depth}"
    return None
