"""The fast path's two switches, resolved for one run: `trainer.channels_last` and
`trainer.compile`, each `true`, `false` or `auto`. What a run used goes into summary.json.

channels_last `auto`: on for every network with 2-d convolutions (all of reslab's), on the CPU
too: measured on a 2-core CPU, NHWC trains ResNet-20 faster at 32×32 (CIFAR, +16 % to +27 %)
and at 8×8 (digits, about +20 %), and VDSR and EDSR (about +23 % and +13 %).

compile `auto`: the first steps run eagerly and are timed; after PROBE_STEPS of them the run
compiles only if the steps left, at the measured step time, would save more than compiling
costs: steps_left × step_s × GAIN > COMPILE_S_PER_LAYER × layers (convolutions and linear
layers). Short runs (the quickstart: 300 steps of 25 ms) never compile; the paper's 64k
iterations do. Both constants are per device type; `reslab bench ... trainer.compile=true`
measures them on a machine (its `compile_s` and the compiled vs eager images/s)."""

from __future__ import annotations

import shutil
import statistics
import time

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
