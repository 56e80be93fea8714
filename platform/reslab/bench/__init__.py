"""Throughput of reslab's training path against plain PyTorch loops, in one process.

Three loops train the same model on the same in-memory pipeline with the same optimizer,
schedule and batch size: reslab's path (its Trainer, task, callbacks and loggers, with the fast
path the config resolves to: layout, compilation, precision), a plain loop with the same memory
format, compilation and precision ("equally optimised"), and the naive eager NCHW fp32 loop a
user would write. The plain loops step inside reslab's fit, between its steps (every step on a
CPU, every round's `steps` on a GPU: loops.Interleaved), so the machine's drift reaches all of
them alike; only steady-state steps after `warmup` are timed. Each round's windows record what
each loop really did, and a ratio is printed only between loops that did the same work
(spread.py). The plain loops exist only as this yardstick."""

from __future__ import annotations

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
from reslab.errors import UserError
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
    for key in ("devices", "num_nodes"):  # DDP against single-device loops compares nothing
        if (n := getattr(cfg.trainer, key)) != 1:
            raise UserError(f"reslab bench times one device in one process, as its plain loops "
                            f"run: trainer.{key} must be 1, got {n}")
    trainer.prepare_process()
    environment.check_launch(1, 1)  # one process: a stray rank would time without printing
    torch.manual_seed(cfg.seed)
    # Every schedule spans the rounds, and no epoch limit ends reslab's path before them (an
    # epoch has at least one step); the one step past them closes the last round.
    last = warmup + steps * rounds + 1
    cfg = derive(cfg, {"trainer.max_steps": last, "trainer.max_epochs": last})
    built = build_net_and_data(cfg)
    dm, net = built.datamodule, built.net
    dm.setup()
    device = torch.device("cuda" if trainer.uses_cuda(cfg) else "cpu")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        timed = loops.interleaved(cfg, dm, net, warmup, steps, rounds, f"{tmp}/reslab", device)
    bs, fast = cfg.data.batch_size, timed.task.fast_path
    sides = {k: spread.side(v) for k, v in timed.records.items() if v}
    out = {"model": cfg.model.name, "depth": cfg.model.depth, "batch_size": bs,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "precision": fast["precision"], "threads": torch.get_num_threads(),
           "steps": steps, "warmup": warmup, "rounds": rounds, "turn": timed.turn,
           "load_before": load_before, "load_after": os.getloadavg()[0],
           "fast_path": dict(fast), "sides": sides, "ratios": spread.ratios(sides)}
    out.update(summary_keys(out))
    if fast["compile"] and "plain" in timed.yardsticks:
        out["compile_s"] = timed.yardsticks["plain"].first_step_s
    out.update(memory(device, net, dm, out["reslab_images_per_s"]))
    if pipelines:
        out.update(time_pipelines(bs))
        out["pipeline_speedup"] = out["memory_images_per_s"] / out["dataloader_images_per_s"]
    return out


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
