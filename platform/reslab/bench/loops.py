"""The loops `reslab bench` times — reslab's training path and the plain PyTorch loops, which
step between its steps — and what each one did inside its timed window, observed while it ran
(not read back from the config)."""

from __future__ import annotations

import copy
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
    """What a loop did while its window was open (it opens and closes many times a round: the
    loops take turns): the optimizer steps it really took (a hook on the optimizer: a skipped
    step does not count), the images it fed, and from every forward call the batch size, the
    input's memory layout, the autocast dtype in force and the output's dtype; wall and process
    CPU seconds (CPU time moves less when other processes share the machine) and minor page
    faults (memory the allocator gave back and takes again)."""

    def __init__(self, device: torch.device):
        self.device, self.open = device, False
        self._clear()

    def _clear(self) -> None:
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

    @staticmethod
    def _now() -> tuple[float, float, int]:
        return (time.perf_counter(), time.process_time(),
                resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    def start(self) -> None:
        _sync(self.device)
        self._opened, self.open = self._now(), True

    def stop(self) -> None:
        _sync(self.device)
        (wall, cpu, faults), (wall0, cpu0, faults0) = self._now(), self._opened
        self.wall, self.cpu = self.wall + wall - wall0, self.cpu + cpu - cpu0
        self.faults, self.open = self.faults + faults - faults0, False

    def take(self, net: nn.Module, loader, compiled: bool) -> dict:
        """The round's work (compared between loops before any ratio) and its times; the
        next round counts afresh."""
        record = {
            "optimizer_steps": self.steps, "images": self.images, "forward_calls": self.forwards,
            "batch_size": sorted(self.batch_sizes), "augmentation": augmentation(loader),
            "autocast": "+".join(sorted(self.autocast)), "dtype": _dtypes(self.dtypes),
            "weight_dtype": _dtypes(p.dtype for p in net.parameters()),
            "memory_format": f"inputs {_formats(self.inputs)}, weights "
                             f"{_formats(layout(p) for p in net.parameters() if p.ndim == 4)}",
            "compiled": compiled, "seconds": self.wall, "cpu_seconds": self.cpu,
            "page_faults": self.faults}
        self._clear()
        return record


def augmentation(loader) -> str:
    """What the loader does to each batch: the in-memory loader's crop padding, flip and
    shuffle, or a DataLoader's per-sample transform."""
    if hasattr(loader, "pad"):
        return f"pad={loader.pad} flip={loader.flip} shuffle={loader.shuffle}"
    return repr(getattr(getattr(loader, "dataset", None), "transform", None))


class Yardstick:
    """The hand-written loop, stepped from outside: each `run(n)` fetches and trains on n
    batches with its window open. The task's loss and the config's optimizer and schedule (over
    `total` steps), nothing else; NCHW, eager and fp32 unless told otherwise (`precision`: a
    Lightning precision)."""

    def __init__(self, cfg: Config, dm, net: nn.Module, device: torch.device, total: int,
                 channels_last: bool = False, compile: bool = False, precision: str = "32-true"):
        self.device, self.compiled, self.first_step_s = device, compile, 0.0
        self.window, self.loader = Window(device), plain_loader(dm)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device, dtype=CAST.get(precision), memory_format=fmt).train()
        self._steps = self._loop(cfg, dm, fmt, total, precision)

    def _loop(self, cfg: Config, dm, fmt: torch.memory_format, total: int, precision: str):
        loss_fn = tasks.build_task(cfg, nn.Identity(), dm).loss  # cross-entropy, or L1/L2 for SR
        cast, dtype, window = CAST.get(precision), AUTOCAST.get(precision), self.window
        forward = window.wrap(torch.compile(self.net) if self.compiled else self.net)
        opt = build_optimizer(cfg.optim, self.net)
        window.watch(opt)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(cfg.optim, total))
        scaler = torch.amp.GradScaler(self.device.type, enabled=dtype is torch.float16)
        while True:
            for x, y in self.loader:
                if window.open:
                    window.images += len(x)
                x, y = (t.to(self.device, cast if cast and t.is_floating_point() else None,
                             non_blocking=True) for t in (x, y))
                with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                    loss = loss_fn(forward(x.contiguous(memory_format=fmt)), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                yield
            self.loader.set_epoch(self.loader.epoch + 1)

    def warm_up(self, steps: int) -> None:
        """`steps` untimed steps; the first one's seconds are kept (with compile: compiling)."""
        t0 = time.perf_counter()
        next(self._steps)
        _sync(self.device)
        self.first_step_s = time.perf_counter() - t0
        for _ in range(steps - 1):
            next(self._steps)

    def run(self, steps: int) -> None:
        self.window.start()
        for _ in range(steps):
            next(self._steps)
        self.window.stop()

    def take(self) -> dict:
        return self.window.take(self.net, self.loader, self.compiled)


def is_naive(fast: dict) -> bool:
    """Whether reslab's path ran eager, NCHW and fp32: the naive loop's own setup."""
    return not (fast["channels_last"] or fast["compile"]) and fast["precision"] in ("32-true", "32")


def steps_per_turn(device: torch.device, steps: int) -> int:
    """How many steps a loop runs before the next one's turn: 1 on a CPU, a round on a GPU."""
    return steps if device.type == "cuda" else 1


class Interleaved(Callback):
    """Times reslab's path inside its own fit, and steps the plain loops (yardsticks) between
    its steps, so that all of them run at the same moments of the machine's drift. On a CPU they
    take turns every step (a step is synchronous there anyway; two adjacent steps of the two
    loops see the same machine, and a 10-step round's ratio moves ~1 % instead of ~10 %); on a
    GPU every `steps` steps, so that each loop's steps queue behind each other as they would
    (a sync every step would hide the host running ahead, or a loop that stops it). The
    yardsticks are built once the warm-up settled reslab's fast path (compile `auto`), and warm
    up as long. reslab's window opens at the start of its turn's first step and closes at the
    start of the step after its turn: whole steps with everything between them (data, hooks,
    logging). The fit runs one step past the last round, whose start closes it."""

    def __init__(self, cfg: Config, dm, net: nn.Module, warmup: int, steps: int, rounds: int,
                 device: torch.device):
        self.cfg, self.dm, self.initial = cfg, dm, copy.deepcopy(net)  # the yardsticks' weights
        self.warmup, self.steps, self.rounds, self.device = warmup, steps, rounds, device
        self.turn = steps_per_turn(device, steps)
        self.window = Window(device)
        self.yardsticks: dict[str, Yardstick] = {}
        self.records: dict[str, list[dict]] = {"reslab": []}
        self.task = self.loader = None

    def on_train_start(self, trainer, pl_module):
        for opt in trainer.optimizers:
            self.window.watch(opt)
        pl_module.wrap_forward(self.window.wrap)
        self.task, self.loader = pl_module, trainer.train_dataloader

    def _build_yardsticks(self) -> None:
        fast, total = self.task.fast_path, self.warmup + self.steps * self.rounds
        sticks = {"plain": (fast["channels_last"], fast["compile"], fast["precision"])}
        if not is_naive(fast):  # else reslab's path is the naive loop's setup: nothing to time
            sticks["naive"] = ()
        for name, setup in sticks.items():
            self.yardsticks[name] = Yardstick(self.cfg, self.dm, copy.deepcopy(self.initial),
                                              self.device, total, *setup)
            self.yardsticks[name].warm_up(self.warmup)
            self.records[name] = []

    def _end_round(self) -> None:
        self.records["reslab"].append(self.window.take(self.task.net, self.loader,
                                                       self.task.fast_path["compile"]))
        for name, stick in self.yardsticks.items():
            self.records[name].append(stick.take())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        done = trainer.global_step - self.warmup  # timed steps of reslab's path so far
        if done < 0 or done > self.steps * self.rounds:
            return
        if done % self.turn == 0:  # the yardsticks' turn
            if done == 0:
                self._build_yardsticks()
            else:
                self.window.stop()
            if done and done % self.steps == 0:
                self._end_round()
            if done == self.steps * self.rounds:
                return
            sticks = list(self.yardsticks.values())
            for stick in sticks if (done // self.turn) % 2 == 0 else sticks[::-1]:
                stick.run(self.turn)
            self.window.start()
        self.window.images += len(batch[0])

    def on_train_end(self, trainer, pl_module):
        if self.window.open:  # fit ended early: the record shows the steps it did take
            self.window.stop()
            self._end_round()


def plain_loader(dm):
    """The plain loops' batches: the data module's own training loader (the same pipeline and
    augmentation as reslab's path). A test replaces it to check the bench notices."""
    return dm.train_dataloader()


def interleaved(cfg: Config, dm, net: nn.Module, warmup: int, steps: int, rounds: int,
                root: str, device: torch.device) -> Interleaved:
    """train.fit's machinery — its Trainer, task, callbacks and loggers — with the yardsticks
    interleaved (Interleaved): each loop's record per round, reslab's fast path."""
    task = tasks.build_task(cfg, net, dm)
    timer = Interleaved(cfg, dm, net, warmup, steps, rounds, device)
    run = RunDir(Path(root))
    run.path.mkdir(parents=True)
    trainer = build_trainer(cfg, run, task, [CSVMetrics(run)], [timer])
    trainer.limit_val_batches = 0  # steady-state training steps only (so no monitored metric)
    with warnings.catch_warnings(), lightning_interrupts():
        warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
        trainer.fit(task, datamodule=dm)
    return timer
