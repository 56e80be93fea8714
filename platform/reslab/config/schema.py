"""The config schema: one frozen dataclass per section, one default per key with a one-line
comment where it is defined. Imports nothing from reslab.

Loading (`reslab.config.load`) merges recipes and overrides onto these classes with OmegaConf's
struct mode, so an unknown key or a wrong type is refused there; the Enum fields are the keys with
a fixed set of values. What the code receives is an instance of `Config`: typed and frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Choice(str, Enum):
    """An Enum whose members are their own string values (`f"{x}"` gives the value)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Freeze(Choice):
    none = "none"
    stem = "stem"
    layer1 = "layer1"
    layer2 = "layer2"
    layer3 = "layer3"
    layer4 = "layer4"
    backbone = "backbone"


class Normalize(Choice):
    pixel_mean = "pixel_mean"
    channel = "channel"
    none = "none"


class Pipeline(Choice):
    auto = "auto"
    memory = "memory"
    loader = "loader"


class Optimizer(Choice):
    sgd = "sgd"
    adamw = "adamw"


class LRSchedule(Choice):
    paper = "paper"
    cosine = "cosine"
    onecycle = "onecycle"
    constant = "constant"


class Loss(Choice):
    l1 = "l1"
    l2 = "l2"


class Channels(Choice):
    y = "y"
    rgb = "rgb"


class Accelerator(Choice):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    cuda = "cuda"


class WandbMode(Choice):
    offline = "offline"
    online = "online"
    disabled = "disabled"


PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cifar_resnet"        # a family (cifar_resnet), a preset (resnet56), or vdsr/edsr
    depth: int | None = None          # None: the preset's depth (20 for cifar_resnet, 50 for imagenet_resnet)
    shortcut: str | None = None       # A | B | C | none (plain); edsr: identity | none; None: the preset's
    block: str | None = None          # cifar: basic (6n+2) | bottleneck (9n+2); None: the preset's or basic
    preact: bool = False              # pre-activation blocks (He et al. 2016)
    width: float = 1.0                # stage-width multiplier (wide ResNets)
    zero_init_residual: bool = False  # zero-init each residual branch's last BN (vdsr/edsr: last conv)
    global_residual: bool | None = None  # vdsr/edsr: add the input back at the end; None: on
    res_scale: float = 1.0            # edsr: residual branch scaling (EDSR baseline 1.0, EDSR 0.1)
    weights: str = "none"             # none | torchvision name (IMAGENET1K_V2) | run dir | checkpoint file
    freeze: Freeze = Freeze.none      # none | stem | layer1..layer4 (up to and including) | backbone


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"              # digits|cifar10|cifar100|imagefolder|synthetic; SR: photos|sr_folder
    root: str = "data"                # where on-disk datasets live
    download: bool = False            # fetch CIFAR when missing (needs internet)
    batch_size: int = 128             # per device
    val_size: float = 0.15            # held out of the training set: a fraction, or a count (5000)
    split_seed: int = 0               # the train/val split is fixed across runs and seeds
    augment: bool = True              # paper augmentation (pad + random crop, flip where it applies)
    normalize: Normalize = Normalize.pixel_mean  # pixel_mean (the paper's) | channel | none
    pipeline: Pipeline = Pipeline.auto  # auto | memory (whole set as one tensor) | loader (DataLoader)
    num_workers: int = 2              # DataLoader workers (pipeline=loader)
    image_size: int = 224             # crop size for imagefolder
    num_classes: int = 10             # synthetic only
    shape: list[int] = field(default_factory=lambda: [3, 32, 32])  # synthetic only (C, H, W)
    size: int = 2048                  # synthetic: number of samples; super-resolution: patches per epoch
    scale: int = 2                    # super-resolution: upscaling factor 2 | 3 | 4
    patch_size: int = 48              # super-resolution: high-resolution training patch side
    channels: Channels = Channels.rgb  # super-resolution: y (luma, the VDSR protocol) | rgb
    test_root: str | None = None      # super-resolution: a benchmark folder (Set5 layout: HR/) as test split
    classes: list[int] | None = None  # keep only these labels, renumbered 0..k-1 (digits 0-4)
    mean: list[float] | None = None   # imagefolder normalisation; None: the weights' own or ImageNet's
    std: list[float] | None = None
    resize_size: int | None = None    # imagefolder eval resize; None: the weights' own or 8/7 x crop


@dataclass(frozen=True)
class OptimConfig:
    name: Optimizer = Optimizer.sgd   # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays every parameter; false spares BN and biases
    schedule: LRSchedule = LRSchedule.cosine  # paper | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])  # paper: iterations
    gamma: float = 0.1                # paper: lr factor at each milestone
    warmup_steps: int = 0             # linear warm-up from 0 over this many iterations
    warmup_lr: float | None = None    # ResNet-110 rule: this lr until train error < warmup_until_err
    warmup_until_err: float = 0.8
    label_smoothing: float = 0.0
    loss: Loss = Loss.l1              # super-resolution: l1 | l2 (classification: cross-entropy)
    backbone_lr_mult: float = 1.0     # lr factor for everything but the classifier (fine-tuning)


@dataclass(frozen=True)
class TrainerConfig:
    max_epochs: int = 30
    max_steps: int = -1               # -1: no step limit
    accelerator: Accelerator = Accelerator.auto  # auto | cpu | gpu | cuda
    devices: int = 1                  # per node
    num_nodes: int = 1
    precision: str = "32-true"        # 32-true | bf16-mixed | 16-mixed
    deterministic: bool = False
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    gradient_clip_val: float | None = None
    limit_train_batches: float | None = None  # a fraction or a count; None: all
    checkpoint_every_n_steps: int = 0  # also write last.ckpt every N steps (hard kills); 0: epochs only
    channels_last: bool | str = "auto"  # NHWC tensors: true | false | auto (conv nets, CPU too)
    compile: bool | str = "auto"      # torch.compile: true | false | auto (when the run repays it)
    cudnn_benchmark: bool = True      # let cuDNN pick the fastest kernels for fixed input shapes
    sync_batchnorm: bool = False      # BN statistics across DDP ranks (small per-GPU batches)
    progress_bar: bool = True         # one bar for the run on a sized terminal, else epoch lines


@dataclass(frozen=True)
class RunConfig:
    root: str = "runs"
    name: str = "default"
    test: bool = True                 # evaluate best.ckpt on the test split after fitting


@dataclass(frozen=True)
class WandbConfig:
    # mode/project/entity: null lets W&B's own WANDB_MODE/WANDB_PROJECT/WANDB_ENTITY decide;
    # where neither is set: offline, project "reslab", files in the run directory.
    mode: WandbMode | None = None    # offline | online | disabled | null (WANDB_MODE, else offline)
    project: str | None = None       # null: WANDB_PROJECT, else "reslab"
    entity: str | None = None        # null: WANDB_ENTITY, else the account's default
    group: str | None = None         # null: the sweep, the SLURM array job, or run.name
    name: str | None = None          # null: what the run is (resnet56-A-seed0)
    tags: list[str] = field(default_factory=list)  # added to family, depth, shortcut, dataset, task
    job_type: str | None = None      # null: train | sweep-trial | array-task | fine-tune
    system_metrics: bool = True      # CPU/GPU/memory panels (W&B's system monitor)
    console: bool = True             # the run's console output as output.log
    log_model: str = "best"          # false | best | last | all: checkpoints as model artifacts


@dataclass(frozen=True)
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "01:00:00"
    nodes: int = 1
    gpus_per_node: int = 0            # 0: CPU job, one task per node
    cpus_per_task: int = 2
    mem: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines before srun (module load ...)
    extra: list[str] = field(default_factory=list)  # extra #SBATCH options
    signal_margin_s: int = 120        # USR1 this long before the time limit
    max_restarts: int = 3


@dataclass(frozen=True)
class DiagnosticsConfig:
    every_n_steps: int = 0            # log per-block response std and gradient norm; 0: off


@dataclass(frozen=True)
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


def select(cfg: Config, key: str):
    """The value at a dotted key (`trainer.devices`)."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
