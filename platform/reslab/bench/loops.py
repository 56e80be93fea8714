"""The loops `reslab bench` times — reslab's training path and the plain PyTorch loop — and what
each one did inside its timed window, observed while it ran (not read back from the config)."""

from __future__ import annotations

import resource
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from reslab import tasks
from reslab.config.schema import Config
from reslab.run.stopping import lightning_interrupts
from reslab.run.trainer import build_trainer
from reslab.tasks.optim import Schedule, build_optimizer
from reslab.tracking.loggers import CSVMetrics
from reslab.tracking.rundir import RunDir

# What a Lightning precision runs: autocast to a dtype (`*-mixed`), or weights and inputs in it.
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
CAST = {"bf16-true": torch.bfloat16}

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def layout(t: torch.Tensor) -> str:
    """NCHW (`contiguous`) or NHWC (`channels_last`); `either` where the two coincide (one
    channel, 1×1 images), which says nothing."""
    nchw, nhwc = t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)
    return "either" if nchw and nhwc else "contiguous" if nchw else \
        "channels_last" if nhwc else "strided"


def _formats(layouts) -> str:
    """Layouts seen, `+`-joined; `either` when none says anything."""
    return "+".join(sorted(set(layouts) - {"either"})) or "either"


def _dtypes(dtypes) -> str:
    return "+".join(sorted({str(d).removeprefix("torch.") for d in dtypes}))


def autocast_state(device_type: str) -> str:
    """The autocast dtype in force for `device_type` (`bfloat16`, `float16`), or `off`."""
    if not torch.is_autocast_enabled(device_type):
        return "off"
    return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")


class Window:
    """What a loop did between `start` and `stop`: the optimizer steps it really took (a hook
    on the optimizer: a skipped step does not count), the images it fed, and from every forward
    call the batch size, the input's memory layout, the autocast dtype in force and the
    output's dtype; wall and process CPU seconds (CPU time moves less when other processes share
    the machine) and minor page faults (memory the allocator gave back and takes again)."""

    def __init__(self, device: torch.device):
        self.device, self.open = device, False
        self.steps = self.images = self.forwards = self.faults = 0
        self.batch_sizes, self.inputs, self.dtypes, self.autocast = set(), set(), set(), set()
        self.wall = self.cpu = 0.0

    def watch(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(self._stepped)

    def _stepped(self, *_) -> None:
        self.steps += self.open

    def wrap(self, forward):
        """`forward`, recording each call made while the window is open."""
        def recorded(x: torch.Tensor) -> torch.Tensor:
            out = forward(x)
            if self.open:
                self.forwards += 1
                self.batch_sizes.add(len(x))
                self.inputs.add(layout(x))
                self.dtypes.add(out.dtype)
                self.autocast.add(autocast_state(x.device.type))
            return out
        return recorded

    def start(self) -> None:
        _sync(self.device)
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.wall, self.cpu, self.open = time.perf_counter(), time.process_time(), True

    def stop(self) -> None:
        _sync(self.device)
        self.wall = time.perf_counter() - self.wall
        self.cpu, self.open = time.process_time() - self.cpu, False
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults

    def record(self, net: nn.Module, loader, compiled: bool) -> dict:
        """The window's work (compared between loops before any ratio) and its times."""
        return {"optimizer_steps": self.steps, "images": self.images,
                "forward_calls": self.forwards, "batch_size": sorted(self.batch_sizes),
                "augmentation": augmentation(loader), "autocast": "+".join(sorted(self.autocast)),
                "dtype": _dtypes(self.dtypes), "weight_dtype": _dtypes(p.dtype for p in net.parameters()),
                "memory_format": f"inputs {_formats(self.inputs)}, weights "
                                 f"{_formats(layout(p) for p in net.parameters() if p.ndim == 4)}",
                "compiled": compiled, "seconds": self.wall, "cpu_seconds": self.cpu,
                "page_faults": self.faults}


def augmentation(loader) -> str:
    """What the loader does to each batch: the in-memory loader's crop padding, flip and
    shuffle, or a DataLoader's per-sample transform."""
    if hasattr(loader, "pad"):
        return f"pad={loader.pad} flip={loader.flip} shuffle={loader.shuffle}"
    return repr(getattr(getattr(loader, "dataset", None), "transform", None))


class StepTimer(Callback):
    """Opens the window at the start of step `warmup` and closes it at the end of step
    `warmup + steps`: whole steps with everything between them (data, hooks, logging)."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.steps = warmup, steps
        self.window = Window(device)
        self.loader = None

    def on_train_start(self, trainer, pl_module):
        for opt in trainer.optimizers:
            self.window.watch(opt)
        pl_module.wrap_forward(self.window.wrap)
        self.loader = trainer.train_dataloader

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.window.start()
        if self.window.open:
            self.window.images += len(batch[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup + self.steps:
            self.window.stop()

    def on_train_end(self, trainer, pl_module):
        if self.window.open:  # fit ended early: the record shows the steps it did take
            self.window.stop()


def time_reslab(cfg: Config, dm, net: nn.Module, warmup: int, steps: int, root: str,
                device: torch.device) -> dict:
    """train.fit's machinery — its Trainer, task, callbacks and loggers — for warmup + steps
    steps; returns the timed window's record and the fast path the task used."""
    task = tasks.build_task(cfg, net, dm)
    timer = StepTimer(warmup, steps, device)
    run = RunDir(Path(root))
    run.path.mkdir(parents=True)
    trainer = build_trainer(cfg, run, task, [CSVMetrics(run)], [timer])
    trainer.limit_val_batches = 0  # steady-state training steps only (so no monitored metric)
    with warnings.catch_warnings(), lightning_interrupts():
        warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
        trainer.fit(task, datamodule=dm)
    return {**timer.window.record(task.net, timer.loader, task.fast_path["compile"]),
            "fast_path": dict(task.fast_path)}


def plain_loader(dm):
    """The plain loop's batches: the data module's own training loader (the same pipeline and
    augmentation as reslab's path). A test replaces it to check the bench notices."""
    return dm.train_dataloader()


def time_plain(cfg: Config, dm, net: nn.Module, warmup: int, steps: int, device: torch.device,
               channels_last: bool = False, compile: bool = False,
               precision: str = "32-true") -> dict:
    """The hand-written loop: the task's loss and the config's optimizer and schedule, nothing
    else; NCHW, eager and fp32 unless told otherwise (`precision`: a Lightning precision)."""
    loss_fn = tasks.build_task(cfg, nn.Identity(), dm).loss  # cross-entropy, or L1/L2 for SR
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    cast = CAST.get(precision)
    net = net.to(device, dtype=cast, memory_format=fmt).train()
    window = Window(device)
    forward = window.wrap(torch.compile(net) if compile else net)
    opt = build_optimizer(cfg.optim, net)
    window.watch(opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(cfg.optim, warmup + steps))
    dtype = AUTOCAST.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    loader, done, t0 = plain_loader(dm), 0, time.perf_counter()
    first_step_s = 0.0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                window.start()
            if window.open:
                window.images += len(x)
            x, y = (t.to(device, cast if cast and t.is_floating_point() else None,
                         non_blocking=True) for t in (x, y))
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(forward(x.contiguous(memory_format=fmt)), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            done += 1
            if done == 1:
                _sync(device)
                first_step_s = time.perf_counter() - t0  # with compile: compiling
            if done == warmup + steps:
                break
        loader.set_epoch(loader.epoch + 1)
    window.stop()
    return {**window.record(net, loader, compile), "first_step_s": first_step_s}
