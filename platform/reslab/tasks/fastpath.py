"""The fast path's switches, resolved for one run: `trainer.channels_last` and `trainer.compile`
(each `true`, `false` or `auto`) and `trainer.precision` (`auto` or a Lightning precision). What
a run used, and why, goes into summary.json.

channels_last `auto`: on for every network with 2-d convolutions (all of reslab's), on the CPU
too: measured on a 2-core CPU, NHWC trains ResNet-20 faster at 32×32 (CIFAR, +16 % to +27 %)
and at 8×8 (digits, about +20 %), and VDSR and EDSR (about +23 % and +13 %).

compile `auto`: the first steps run eagerly and are timed; after PROBE_STEPS of them the run
compiles only if the steps left, at the measured step time, would save more than compiling
costs: steps_left × step_s × GAIN > COMPILE_S_PER_LAYER × layers (convolutions and linear
layers). Short runs (the quickstart: 300 steps of 25 ms) never compile; the paper's 64k
iterations do. Both constants are per device type; `reslab bench ... trainer.compile=true`
measures them on a machine (its `compile_s` and the compiled vs eager images/s).

precision `auto`: bf16-mixed where the device computes bf16 natively (a CUDA GPU with bf16, a CPU
with AVX512-BF16 or AMX: +48 % images/s for ResNet-20 on a 2-core EPYC) and bf16 keeps the run's
results (not the 1000-layer nets: DEEP_LAYERS), 32-true elsewhere; docs/bf16.md."""

from __future__ import annotations

import ctypes
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

PROBE_STEPS = 5  # eager steps timed before `auto` decides (after the first, which warms up)
# Recorded on CPU (2-core EPYC VM, ResNet-20 = 20 layers, batch 128, channels_last): a cold
# compile (empty inductor cache) took 64 s on a quiet machine and 79.5 s on a loaded one (the
# larger is kept: 4 s a layer); +7 % images/s after (236 -> 253, 2 threads, quiet; not
# reproduced with 1 thread under load). A warm cache compiles in seconds, so this errs towards
# eager. CUDA: not measured by this project (no GPU was lent to it); conservative guesses until
# `reslab bench ... trainer.compile=true` on a GPU records them.
COMPILE_S_PER_LAYER = {"cpu": 4.0, "cuda": 2.0}
GAIN = {"cpu": 0.07, "cuda": 0.25}


def parse(value: bool | str) -> bool | str:
    """True, False or "auto" (the schema's `bool | str`; validate.py refuses other strings)."""
    return value if isinstance(value, bool) else str(value).lower()


def use_channels_last(setting: bool | str, net: nn.Module) -> bool:
    if setting == "auto":
        return any(isinstance(m, nn.Conv2d) for m in net.modules())
    return bool(setting)


def layers(net: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())


def compile_cost_s(net: nn.Module, device: str) -> float:
    return COMPILE_S_PER_LAYER.get(device, COMPILE_S_PER_LAYER["cuda"]) * layers(net)


def can_compile(device: str) -> tuple[bool, str]:
    """Whether torch.compile can work here: inductor needs a C++ compiler on the CPU and
    Triton on a GPU; `auto` stays eager (and says why) where it cannot."""
    if device == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return False, "no C++ compiler on PATH (inductor needs one on the CPU)"
    if device == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "Triton is not installed"
    return True, ""


def decide(steps_left: int, step_s: float, net: nn.Module, device: str) -> tuple[bool, str]:
    """`auto`'s rule: compile when the time saved over the steps left repays compiling."""
    ok, why = can_compile(device)
    if not ok:
        return False, f"auto: eager, {why}"
    gain = GAIN.get(device, GAIN["cuda"])
    saved, cost = steps_left * step_s * gain, compile_cost_s(net, device)
    verdict = "compiled" if saved > cost else "eager"
    return saved > cost, (f"auto: {verdict}, {steps_left} steps left x {1000 * step_s:.1f} ms x "
                          f"{gain:.0%} expected gain = {saved:.0f} s saved vs ~{cost:.0f} s to "
                          f"compile {layers(net)} layers")


class CompileProbe:
    """`compile: auto` during fit: times PROBE_STEPS eager steps (between batch starts; the
    median, so a validation pass in between does not count), then decides once. Under DDP rank
    0's decision is broadcast, so every rank runs the same program."""

    def __init__(self):
        self.starts, self.done = [], False

    def reset(self) -> None:
        self.starts, self.done = [], False  # each fit (a resumed attempt) decides again

    def on_batch_start(self, task) -> None:
        if self.done:
            return
        self.starts.append(time.perf_counter())
        if len(self.starts) < PROBE_STEPS + 2:  # the first interval warms up
            return
        self.done = True
        trainer = task.trainer
        step_s = statistics.median(b - a for a, b in zip(self.starts[1:], self.starts[2:]))
        total = trainer.estimated_stepping_batches  # inf: no epoch or step limit
        left = 10**9 if total == float("inf") else int(total) - trainer.global_step
        use, why = decide(left, step_s, task.net, task.device.type)
        if trainer.world_size > 1:
            use, why = trainer.strategy.broadcast((use, why))
        task.set_compiled(use, why)


# CPU flags of native bf16 arithmetic (oneDNN's bf16 kernels): AVX512-BF16 (Cooper Lake, Zen 4+)
# and AMX (Sapphire Rapids+). Elsewhere bf16 is emulated and no faster than fp32. ARM's BF16
# is left out: not measured by this project (set trainer.precision=bf16-mixed to use it).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")  # where the flags are read when torch cannot say
# Where `auto` keeps fp32 although bf16 is native: the 1000-layer nets. bf16 rounds the
# residual stream at each of their ~400-1000 additions; at initialisation the bf16 gradient's
# cosine to the fp64 one was 0.62 (ResNet-1202) and 0.06 (pre-act ResNet-1001), against 0.88-0.98
# for ResNet-20..110 (docs/bf16.md). Their question (does it optimise at all?) must not hinge
# on the arithmetic; the price: bf16 trained ResNet-1202 at ~1.6x the images/s on this CPU.
DEEP_LAYERS = 1000  # convolutions and linear layers
DEEP_FP32 = f"{DEEP_LAYERS}+ layers: bf16 rounding at every block bends the gradient"


def device_type(accelerator) -> str:
    """`cuda` for trainer.accelerator gpu/cuda, or auto on a machine with a GPU; else `cpu`."""
    a = str(accelerator)
    return "cuda" if a in ("gpu", "cuda") or (a == "auto" and torch.cuda.is_available()) else "cpu"


def precision(setting: str, device: str, net: nn.Module) -> tuple[str, str]:
    """The Lightning precision a run uses and why: an explicit setting as given; `auto`
    bf16-mixed where the device has native bf16 and bf16 keeps the run's results, 32-true
    elsewhere. The Trainer of fit and of test, and the bench's loops, all use this."""
    if setting != "auto":
        return setting, f"trainer.precision={setting}"
    if layers(net) >= DEEP_LAYERS:
        return "32-true", f"auto: 32-true, {DEEP_FP32}"
    native, why = native_bf16(device)
    return ("bf16-mixed", f"auto: bf16-mixed, {why}") if native else \
        ("32-true", f"auto: 32-true, {why}")


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether `device` computes bf16 natively, and what says so."""
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name()} has native bf16"
        return False, "the GPU has no native bf16 (it needs compute capability 8.0+)"
    found = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
    if found:
        return True, f"the CPU has {' and '.join(found)}"
    return False, f"the CPU has no native bf16 (none of {', '.join(BF16_CPU_FLAGS)})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags: torch's own detection where it has it (torch.cpu.
    get_capabilities, cpuinfo), else the flags of /proc/cpuinfo (Linux); empty if neither."""
    if capabilities := getattr(torch.cpu, "get_capabilities", None):
        return {name for name, v in capabilities().items() if v is True}
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags")
            for flag in line.partition(":")[2].split()}


# glibc's malloc hands freed memory back to the kernel (it trims the heap's free top once it
# exceeds a threshold, and maps big blocks anew each time) and takes it back at the next step, one
# page fault per 4 KiB page: ResNet-20 fp32, batch 128, on the CPU took ~12,000 faults a step
# (20,000+ with 2 threads), a few ms each step, varying between two loops of the same work. Kept
# for reuse (mmap only above 32 MiB, glibc's ceiling; trim only above 1 GiB) steady steps fault
# ~0 times. The cost: the process keeps its peak heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
KEEP_FREED = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30}


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (above); False where the C library is
    not glibc (musl, macOS, Windows: nothing is changed)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    return all(mallopt(param, value) == 1 for param, value in KEEP_FREED.items())
