"""Throughput of reslab's training path against plain PyTorch loops, in one process.

Three loops train the same model on the same in-memory pipeline with the same optimizer,
schedule and batch size: reslab's path (its Trainer, task, callbacks and loggers, with the fast
path the config resolves to: layout, compilation, precision), a plain loop with the same memory
format, compilation and precision ("equally optimised"), and the naive eager NCHW fp32 loop a
user would write. They
alternate in rounds (the order reversed every other round) so machine drift cancels; only
steady-state steps after `warmup` are timed. Each round's window records what the loop really
did, and a ratio is printed only between loops that did the same work (spread.py). The plain
loops exist only as this yardstick."""

from __future__ import annotations

import copy
import os
import resource
import tempfile

import torch

from reslab import environment
from reslab.bench import loops, spread
from reslab.bench.pipeline import time_pipelines
from reslab.bench.spread import format_result
from reslab.config.load import derive
from reslab.config.schema import Config
from reslab.models.profile import count_macs
from reslab.run import trainer
from reslab.run.build import build_net_and_data

__all__ = ["bench", "format_result"]

# Dense bf16 tensor-core peaks (FLOP/s) for MFU; training FLOPs per image = 6 x forward MACs.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "V100": 125e12}
WARMUP = 12  # past the first log write, the digits' first epoch end and compile: auto's probe


def bench(cfg: Config, steps: int = 30, rounds: int = 3, warmup: int = WARMUP,
          pipelines: bool = True) -> dict:
    """Images/s of each loop per round (min/median/max), the ratios with their spread or the
    reason for refusing one, peak memory and (on GPU) MFU; then the input pipelines alone."""
    trainer.prepare_process()
    environment.check_launch(1, 1)  # one process: a stray rank would time without printing
    torch.manual_seed(cfg.seed)
    # Every schedule spans the window, and no epoch limit ends reslab's path before it (an
    # epoch has at least one step).
    cfg = derive(cfg, {"trainer.max_steps": warmup + steps, "trainer.max_epochs": warmup + steps})
    built = build_net_and_data(cfg)
    dm, net = built.datamodule, built.net
    dm.setup()
    device = torch.device("cuda" if trainer.uses_cuda(cfg) else "cpu")
    load_before = os.getloadavg()[0]
    records = {"reslab": [], "plain": [], "naive": []}
    fast = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = ["reslab", "plain", "naive"]
            for name in order if r % 2 == 0 else order[::-1]:
                if name == "naive" and fast is not None and is_naive(fast):
                    continue  # reslab's path is the naive loop's setup: nothing else to time
                rec = run_side(name, cfg, dm, copy.deepcopy(net), warmup, steps, device,
                               f"{tmp}/r{r}", fast)
                fast = rec.pop("fast_path", fast)
                records[name].append(rec)
    bs = cfg.data.batch_size
    sides = {k: spread.side(v) for k, v in records.items() if len(v) == rounds}
    out = {"model": cfg.model.name, "depth": cfg.model.depth, "batch_size": bs,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "precision": fast["precision"], "threads": torch.get_num_threads(),
           "steps": steps, "warmup": warmup, "rounds": rounds,
           "load_before": load_before, "load_after": os.getloadavg()[0],
           "fast_path": fast, "sides": sides, "ratios": spread.ratios(sides)}
    out.update(summary_keys(out))
    if fast["compile"] and records["plain"]:
        out["compile_s"] = records["plain"][0]["first_step_s"]
    out.update(memory(device, net, dm, out["reslab_images_per_s"]))
    if pipelines:
        out.update(time_pipelines(bs))
        out["pipeline_speedup"] = out["memory_images_per_s"] / out["dataloader_images_per_s"]
    return out


def is_naive(fast: dict) -> bool:
    """Whether reslab's path ran eager, NCHW and fp32: the naive loop's own setup."""
    return not (fast["channels_last"] or fast["compile"]) and fast["precision"] in ("32-true", "32")


def run_side(name: str, cfg: Config, dm, net, warmup: int, steps: int, device: torch.device,
             root: str, fast: dict | None) -> dict:
    """One loop for one round. reslab's path runs first in round 1 (even rounds start with it),
    so the plain loops know its fast path (and its precision: `auto` resolved once, there)."""
    if name == "reslab":
        return loops.time_reslab(cfg, dm, net, warmup, steps, f"{root}-reslab", device)
    if name == "plain":
        return loops.time_plain(cfg, dm, net, warmup, steps, device,
                                fast["channels_last"], fast["compile"], fast["precision"])
    return loops.time_plain(cfg, dm, net, warmup, steps, device)


def summary_keys(r: dict) -> dict:
    """The medians and ratios as flat keys (scripts and the README table read these); a
    refused ratio is None, with `refused` saying why."""
    out = {}
    for name, s in r["sides"].items():
        out[f"{name}_images_per_s"] = s["median"]
        out[f"{name}_ms_per_step"] = s["ms_per_step"]
        out[f"{name}_optimizer_steps"] = [w["optimizer_steps"] for w in s["work"]]
        out[f"{name}_images"] = [w["images"] for w in s["work"]]
    for name, q in r["ratios"].items():
        key = "ratio" if name == "plain" else f"ratio_{name}"
        out[key] = q.get("ratio")
        if "refused" in q:
            out.setdefault("refused", {})[name] = q["refused"]
    return out


def memory(device: torch.device, net, dm, images_per_s: float) -> dict:
    if device.type != "cuda":
        return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out = {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    name = torch.cuda.get_device_name(device)
    if peak := next((v for k, v in PEAK_FLOPS.items() if k in name), None):
        out["mfu"] = 6 * count_macs(net.cpu(), dm.input_size) * images_per_s / peak
    return out
