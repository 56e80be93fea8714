"""What the model zoo holds, without importing torch: one typed `ModelInfo` per registered name
(family, task, the config keys its builder takes, input size, what a preset fixes) and the depth
rules of each family. Listing, validating a config and `reslab config` need only this; the
networks themselves are built by `reslab.models.build_model`, which imports the family's module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reslab.registry import Registry

SHORTCUTS = ("A", "B", "C", "none")      # He et al. 2015 options A/B/C; none = the plain net
RESIDUAL = ("A", "B", "C")
BLOCKS = ("basic", "bottleneck")         # CIFAR: depth 6n+2 (basic) or 9n+2 (bottleneck, 2016)
BOTTLENECK_PRESETS = (164, 1001)         # the depths people mean by "ResNet-164/1001"
SR_SHORTCUTS = ("identity", "none")
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)  # Table 1
SR_SCALES = (2, 3, 4)                    # super-resolution upscaling factors
SR_MIN_DEPTH = {"vdsr": 3, "edsr": 1}   # vdsr: conv layers; edsr: residual blocks
HEAD = "fc"  # the classifier of every ResNet (torchvision's name), replaced when fine-tuning
RESNET_OPTIONS = ("depth", "shortcut", "block", "preact", "width", "zero_init_residual")
# What naming a model sets: a preset's values, or for a family the schema's defaults (None, False).
ARCH_KEYS = ("depth", "shortcut", "block", "preact")
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
    fixed: dict[str, Any] = field(default_factory=dict)  # a preset's depth/shortcut/block/preact
    stages: tuple[str, ...] = ()        # freezable stages, in order (model.freeze)
    head: str | None = None             # the classifier, replaced when the classes differ

    @property
    def depth(self) -> int | None:
        """The preset's depth, or None for a family (depth is a config value)."""
        return self.fixed.get("depth")

    @property
    def shortcut(self) -> str | None:
        """The shortcut built when the config leaves it unset (the first allowed one)."""
        return self.fixed.get("shortcut", self.shortcuts[0] if self.shortcuts else None)

    @property
    def block(self) -> str | None:
        """A preset's block kind, pre-activated or not (ImageNet: by depth, Table 1)."""
        kind = self.fixed.get("block")
        if self.family == "imagenet" and self.depth:
            kind = "basic" if self.depth < 50 else "bottleneck"
        return f"preact-{kind}" if kind and self.fixed.get("preact") else kind

    @property
    def blocks(self) -> tuple[str, ...]:
        """The allowed model.block values: both for CIFAR nets (a preset's own is enforced with
        its other fixed keys, validate.check_preset), none for the others."""
        return BLOCKS if self.family == "cifar" else ()


MODELS: Registry[ModelInfo] = Registry("model")


def register(info: ModelInfo) -> None:
    MODELS.register(info.name, info)


def _resnet(name: str, family: str, shortcuts: tuple[str, ...] = SHORTCUTS, **fixed: Any
            ) -> ModelInfo:
    """A ResNet family (no depth) or preset (depth, shortcut, block, preact all fixed; the
    shortcut may still be any of `shortcuts`: ResNet-56 with option B is ResNet-56)."""
    cifar = family == "cifar"
    if "depth" in fixed:
        fixed = {"shortcut": shortcuts[0], "preact": False, **({"block": "basic"} if cifar else {}),
                 **fixed}
    return ModelInfo(
        name, family, "classification", f"resnet:{family}_resnet", RESNET_OPTIONS, shortcuts,
        CIFAR_INPUT if cifar else IMAGENET_INPUT, 20 if cifar else 50, fixed,
        stages=("layer1", "layer2", "layer3") if cifar else ("layer1", "layer2", "layer3", "layer4"),
        head=HEAD)


register(_resnet("cifar_resnet", "cifar"))
register(_resnet("imagenet_resnet", "imagenet", ("B", "A", "C", "none")))
for _d in (20, 32, 44, 56, 110, 1202):
    register(_resnet(f"resnet{_d}", "cifar", RESIDUAL, depth=_d))
    register(_resnet(f"plain{_d}", "cifar", ("none",), depth=_d))
register(_resnet("preact_resnet110", "cifar", RESIDUAL, depth=110, preact=True))
for _d in BOTTLENECK_PRESETS:  # He et al. 2016: bottleneck blocks with projection shortcuts
    register(_resnet(f"resnet{_d}", "cifar", ("B", "A", "C"), depth=_d, block="bottleneck"))
    register(_resnet(f"preact_resnet{_d}", "cifar", ("B", "A", "C"), depth=_d,
                     block="bottleneck", preact=True))
for _d in IMAGENET_DEPTHS:
    register(_resnet(f"resnet{_d}", "imagenet", ("B", "A", "C"), depth=_d))
register(ModelInfo("vdsr", "vdsr", "super_resolution", "sr:VDSR",
                   ("depth", "width", "global_residual", "zero_init_residual"), (), SR_INPUT, 20))
register(ModelInfo("edsr", "edsr", "super_resolution", "sr:EDSR",
                   ("depth", "width", "shortcut", "global_residual", "zero_init_residual",
                    "res_scale"), SR_SHORTCUTS, SR_INPUT, 16, {}))


def depth_error(family: str, depth: int, block: str | None = None) -> str | None:
    """Why `depth` is not valid for the model family (and CIFAR block), as a sentence fragment
    that names the right family for the depth, or None. block None means basic, except that a
    depth only bottleneck nets have, or ResNet-164/1001's, is refused rather than guessed."""
    if family == "cifar":
        basic, bottleneck = _cifar_depth(depth, 6), _cifar_depth(depth, 9)
        if block == "bottleneck":
            return None if bottleneck else (
                f"depth must be 9n+2 for cifar bottleneck stems, got {depth} (did you mean "
                f"{_near(depth, 9)}?{' or model.block=basic' if basic else ''})")
        if block is None and bottleneck and (depth in BOTTLENECK_PRESETS or not basic):
            other = " (or model.block=basic for 6n+2 basic blocks)" if basic else ""
            return (f"depth={depth} is a bottleneck depth (9n+2, He et al. 2016): set "
                    f"model.block=bottleneck{other}")
        if basic:
            return None
        return f"depth must be 6n+2 for cifar stems, got {depth} (did you mean {_near(depth, 6)}?)"
    if family == "imagenet" and depth not in IMAGENET_DEPTHS:
        allowed = ", ".join(map(str, IMAGENET_DEPTHS))
        return f"depth must be one of {allowed} for the imagenet family, got {depth}"
    if family in SR_MIN_DEPTH and depth < SR_MIN_DEPTH[family]:
        unit = "conv layers" if family == "vdsr" else "residual blocks"
        return f"depth ({unit}) must be at least {SR_MIN_DEPTH[family]} for {family}, got {depth}"
    return None


def _cifar_depth(depth: int, per_block: int) -> bool:
    """depth = 3 stages x n blocks x (2 or 3) layers + stem + classifier, n >= 1."""
    return depth >= per_block + 2 and (depth - 2) % per_block == 0


def _near(depth: int, per_block: int) -> int:
    return max(per_block + 2, per_block * round((depth - 2) / per_block) + 2)
