"""The config schema: one frozen dataclass per section, one default per key with a one-line
comment where it is defined. Imports nothing from reslab.

Every field declares its domain beside it (`value(default, ...)`, reslab.config.domain):
what values it accepts, checked in one place (config.validate). Loading (`reslab.config.load`)
merges recipes and overrides onto these classes with OmegaConf's struct mode, so an unknown key or
a wrong type is refused there; the Enum fields are the keys with a fixed set of values. What the
code receives is an instance of `Config`: typed and frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from reslab.config.domain import LINE, NAME, PATH, Domain, value


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


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")
BIG = 10**9        # a count no run reaches (steps, epochs, samples)
SEED = 2**32       # numpy's seed range
TIME = r"(\d+-)?\d+(:\d{1,2}){0,2}"  # SLURM --time: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
WORD = r"[A-Za-z0-9_.,:+=@%-]+"      # a SLURM partition, account or qos
WORDS = "a SLURM name (letters, digits and _.,:+=@%-)"
MEM = r"\d+[KMGT]?B?"                # SLURM --mem: 4000, 16G, 500MB


@dataclass(frozen=True)
class ModelConfig:
    # a family (cifar_resnet), a preset (resnet56), or vdsr/edsr
    name: str = value("cifar_resnet", text=NAME)
    # None: the preset's depth (20 for cifar_resnet, 50 for imagenet_resnet); the deepest nets of
    # the papers have 1202 (He et al. 2015) and 1001 (He et al. 2016) layers
    depth: int | None = value(None, ge=1, le=2000)
    # A | B | C | none (plain); edsr: identity | none; None: the preset's
    shortcut: str | None = value(None, text=NAME)
    # cifar: basic (6n+2) | bottleneck (9n+2); None: the preset's or basic
    block: str | None = value(None, text=NAME)
    preact: bool = value(False)                 # pre-activation blocks (He et al. 2016)
    width: float = value(1.0, gt=0, le=16)      # stage-width multiplier (wide ResNets: 10 at most)
    zero_init_residual: bool = value(False)     # zero-init each branch's last BN (vdsr/edsr: conv)
    global_residual: bool | None = value(None)  # vdsr/edsr: add the input back at the end; None: on
    res_scale: float = value(1.0, gt=0, le=10)  # edsr: residual scaling (EDSR baseline 1.0, EDSR 0.1)
    # none | torchvision name (IMAGENET1K_V2) | run dir | checkpoint file
    weights: str = value("none", text=PATH)
    freeze: Freeze = value(Freeze.none)  # none | stem | layer1..layer4 (up to and including) | backbone


@dataclass(frozen=True)
class DataConfig:
    # digits|cifar10|cifar100|imagefolder|synthetic; SR: photos|sr_folder
    name: str = value("digits", text=NAME)
    root: str = value("data", text=PATH)        # where on-disk datasets live
    download: bool = value(False)               # fetch CIFAR when missing (needs internet)
    batch_size: int = value(128, ge=1, le=65536)  # per device
    # held out of the training set: a fraction (< 1), or a count (5000)
    val_size: float = value(0.15, gt=0, le=BIG)
    split_seed: int = value(0, ge=0, lt=SEED)   # the train/val split is fixed across runs and seeds
    augment: bool = value(True)                 # paper augmentation (pad + crop, flip where it applies)
    normalize: Normalize = value(Normalize.pixel_mean)  # pixel_mean (the paper's) | channel | none
    pipeline: Pipeline = value(Pipeline.auto)   # auto | memory (one tensor) | loader (DataLoader)
    num_workers: int = value(2, ge=0, le=256)   # DataLoader workers (pipeline=loader)
    image_size: int = value(224, ge=8, le=4096)  # crop size for imagefolder
    num_classes: int = value(10, ge=2, le=100000)  # synthetic only
    # synthetic only (C, H, W)
    shape: list[int] = value([3, 32, 32], min_len=3, max_len=3, each=Domain(ge=1, le=4096))
    size: int = value(2048, ge=1, le=BIG)       # synthetic: samples; super-resolution: patches an epoch
    scale: int = value(2, choices=(2, 3, 4))    # super-resolution: upscaling factor
    patch_size: int = value(48, ge=4, le=4096)  # super-resolution: high-resolution training patch side
    channels: Channels = value(Channels.rgb)    # super-resolution: y (luma, the VDSR protocol) | rgb
    # super-resolution: a benchmark folder (Set5 layout: HR/) as the test split
    test_root: str | None = value(None, text=PATH)
    # keep only these labels, renumbered 0..k-1 (digits 0-4); two classes at least
    classes: list[int] | None = value(None, min_len=2, max_len=100000, distinct=True,
                                      each=Domain(ge=0, le=100000))
    # imagefolder normalisation (one value, or one per channel); None: the weights' own or ImageNet's
    mean: list[float] | None = value(None, min_len=1, max_len=3, each=Domain(ge=-1000, le=1000))
    std: list[float] | None = value(None, min_len=1, max_len=3, each=Domain(gt=0, le=1000))
    # imagefolder eval resize; None: the weights' own or 8/7 x crop
    resize_size: int | None = value(None, ge=8, le=8192)


@dataclass(frozen=True)
class OptimConfig:
    name: Optimizer = value(Optimizer.sgd)      # sgd | adamw
    lr: float = value(0.1, gt=0, lt=100)
    momentum: float = value(0.9, ge=0, lt=1)
    nesterov: bool = value(False)
    weight_decay: float = value(1e-4, ge=0, le=1)
    decay_norm_and_bias: bool = value(True)     # the paper decays every parameter; false spares BN, biases
    schedule: LRSchedule = value(LRSchedule.cosine)  # paper | cosine | onecycle | constant
    # paper: the lr is multiplied by gamma at each of these ITERATIONS (steps, not epochs)
    milestones: list[int] = value([32000, 48000], max_len=100, increasing=True,
                                  each=Domain(ge=1, le=BIG))
    gamma: float = value(0.1, gt=0, le=1)       # paper: lr factor at each milestone
    warmup_steps: int = value(0, ge=0, le=BIG)  # linear warm-up from 0 over this many iterations
    # ResNet-110 rule: this lr until train error < warmup_until_err
    warmup_lr: float | None = value(None, gt=0, lt=100)
    warmup_until_err: float = value(0.8, gt=0, le=1)
    label_smoothing: float = value(0.0, ge=0, lt=1)
    loss: Loss = value(Loss.l1)                 # super-resolution: l1 | l2 (classification: cross-entropy)
    backbone_lr_mult: float = value(1.0, ge=0, le=100)  # lr factor for all but the classifier (fine-tuning)


@dataclass(frozen=True)
class TrainerConfig:
    max_epochs: int = value(30, ge=1, le=10**6)
    max_steps: int = value(-1, special=(-1,), ge=1, le=BIG)  # -1: no step limit
    accelerator: Accelerator = value(Accelerator.auto)  # auto | cpu | gpu | cuda
    devices: int = value(1, ge=1, le=1024)      # per node
    num_nodes: int = value(1, ge=1, le=100000)
    # auto: bf16-mixed where the hardware has native bf16, else 32-true
    precision: str = value("auto", choices=PRECISIONS)
    deterministic: bool = value(False)
    log_every_n_steps: int = value(10, ge=1, le=BIG)
    check_val_every_n_epoch: int = value(1, ge=1, le=10**6)
    gradient_clip_val: float | None = value(None, gt=0, le=1e6)
    # a fraction (<= 1) or a whole count of batches; None: all
    limit_train_batches: float | None = value(None, gt=0, le=BIG)
    # also write last.ckpt every N steps (hard kills); 0: at epoch ends only
    checkpoint_every_n_steps: int = value(0, ge=0, le=BIG)
    # NHWC tensors: true | false | auto (conv nets, CPU too)
    channels_last: bool | str = value("auto", choices=(True, False, "auto"))
    compile: bool | str = value("auto", choices=(True, False, "auto"))  # torch.compile; auto: when it repays
    cudnn_benchmark: bool = value(True)         # cuDNN picks kernels for fixed shapes (not if deterministic)
    sync_batchnorm: bool = value(False)         # BN statistics across DDP ranks (small per-GPU batches)
    progress_bar: bool = value(True)            # one bar for the run on a sized terminal, else epoch lines


@dataclass(frozen=True)
class RunConfig:
    root: str = value("runs", text=PATH)
    name: str = value("default", text=NAME)
    test: bool = value(True)                    # evaluate best.ckpt on the test split after fitting


@dataclass(frozen=True)
class WandbConfig:
    # mode/project/entity: null lets W&B's own WANDB_MODE/WANDB_PROJECT/WANDB_ENTITY decide;
    # where neither is set: offline, project "reslab", files in the run directory.
    mode: WandbMode | None = value(None)        # offline | online | disabled | null (WANDB_MODE)
    project: str | None = value(None, text=NAME)  # null: WANDB_PROJECT, else "reslab"
    entity: str | None = value(None, text=NAME)   # null: WANDB_ENTITY, else the account's default
    group: str | None = value(None, text=LINE)    # null: the sweep, the SLURM array job, or run.name
    name: str | None = value(None, text=LINE)     # null: what the run is (resnet56-A-seed0)
    # added to family, depth, shortcut, dataset, task (W&B: 64 characters a tag)
    tags: list[str] = value([], max_len=100, each=Domain(text=LINE, pattern=".{1,64}",
                                                         shape="1 to 64 printable characters"))
    job_type: str | None = value(None, text=NAME)  # null: train | sweep-trial | array-task | fine-tune
    system_metrics: bool = value(True)          # CPU/GPU/memory panels (W&B's system monitor)
    console: bool = value(True)                 # the run's console output as output.log
    # checkpoints as model artifacts
    log_model: bool | str = value("best", choices=(False, "best", "last", "all"))


@dataclass(frozen=True)
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = value(None, pattern=WORD, shape=WORDS)
    account: str | None = value(None, pattern=WORD, shape=WORDS)
    qos: str | None = value(None, pattern=WORD, shape=WORDS)
    time: str = value("01:00:00", pattern=TIME, shape="a time such as 01:00:00 or 2-12:00:00")
    nodes: int = value(1, ge=1, le=100000)
    gpus_per_node: int = value(0, ge=0, le=64)  # 0: CPU job, one task per node
    cpus_per_task: int = value(2, ge=1, le=4096)
    mem: str | None = value(None, pattern=MEM, shape="a size such as 16G or 4000M")
    constraint: str | None = value(None, pattern=r"[A-Za-z0-9_.,:+=@%&|!()\[\]*-]+",
                                   shape="a SLURM feature expression (letters, digits, &|!()[]*)")
    setup: list[str] = value([], max_len=1000, each=Domain(text=LINE))  # shell lines before srun
    extra: list[str] = value([], max_len=100, each=Domain(text=LINE))   # extra #SBATCH options
    signal_margin_s: int = value(120, ge=0, le=65535)  # USR1 this long before the time limit (sbatch's most)
    max_restarts: int = value(3, ge=0, le=10000)


@dataclass(frozen=True)
class DiagnosticsConfig:
    every_n_steps: int = value(0, ge=0, le=BIG)  # log per-block response std and gradient norm; 0: off


@dataclass(frozen=True)
class Config:
    seed: int = value(0, ge=0, lt=SEED)
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
