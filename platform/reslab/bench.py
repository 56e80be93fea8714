"""Throughput of reslab's training path against a plain PyTorch loop, in one process.

Both loops train the same model on the same in-memory pipeline with the same optimizer,
schedule, precision and batch size; they alternate in rounds so machine drift cancels, and only
steady-state steps (after warm-up) are timed. The plain loop exists only as this yardstick."""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from reslab import tasks, train
from reslab.build import build
from reslab.config.load import derive
from reslab.config.schema import Config
from reslab.data.memory import MemoryLoader
from reslab.loggers import CSVMetrics
from reslab.models.profile import count_macs
from reslab.rundir import RunDir
from reslab.tasks.optim import Schedule, build_optimizer

# Dense bf16 tensor-core peaks (FLOP/s) for MFU; training FLOPs per image = 6 x forward MACs.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "V100": 125e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Window:
    """What a loop did inside its timed window: optimizer steps actually taken (counted by a
    hook on the optimizer, so a skipped step is not counted) and images fed."""

    def __init__(self):
        self.open, self.steps, self.images = False, 0, 0

    def watch(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(self._stepped)

    def _stepped(self, *_) -> None:
        self.steps += self.open


class StepTimer(Callback):
    """Wall time from the start of step `warmup` to the start of the step after the last, i.e.
    whole steps with everything between them (data, hooks, logging)."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.t0 = self.t1 = None
        self.window = Window()

    def on_train_start(self, trainer, pl_module):
        for opt in trainer.optimizers:
            self.window.watch(opt)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            _sync(pl_module.device)
            self.t0 = time.perf_counter()
            self.window.open = True
        if self.window.open:
            self.window.images += len(batch[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup + self.steps:
            _sync(pl_module.device)
            self.t1 = time.perf_counter()
            self.window.open = False


def time_reslab(cfg: Config, dm, net, warmup: int, steps: int, root) -> tuple[float, Window]:
    """Seconds per step of train.fit's machinery: its Trainer, callbacks and loggers."""
    task = tasks.build(cfg, net, dm)
    timer = StepTimer(warmup, steps)
    run = RunDir(Path(root))
    run.path.mkdir(parents=True)
    trainer = train.build_trainer(cfg, run, task, [CSVMetrics(run)], [timer])
    trainer.limit_val_batches = 0  # steady-state training steps only (so no monitored metric)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
        trainer.fit(task, datamodule=dm)
    return (timer.t1 - timer.t0) / steps, timer.window


def time_plain(cfg: Config, dm, net, warmup: int, steps: int, device: torch.device
               ) -> tuple[float, Window]:
    """Seconds per step of the hand-written loop (the task's loss function, nothing else)."""
    loss_fn = tasks.build(cfg, nn.Identity(), dm).loss  # cross-entropy, or L1/L2 for SR
    net = net.to(device).train()
    opt = build_optimizer(cfg.optim, net)
    window = Window()
    window.watch(opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(cfg.optim, warmup + steps))
    dtype = torch.bfloat16 if cfg.trainer.precision.startswith("bf16") else None
    loader, done, t0 = dm.train_dataloader(), 0, 0.0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
                window.open = True
            if window.open:
                window.images += len(x)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if done == warmup + steps:
                break
        loader.set_epoch(loader.epoch + 1)
    _sync(device)
    return (time.perf_counter() - t0) / steps, window


def time_pipelines(cfg: Config, n: int = 8192, batches: int = 40) -> dict:
    """Images/s of the in-memory batched pipeline vs a torchvision DataLoader with per-sample
    PIL transforms and 2 workers (the usual CIFAR pipeline), on CIFAR-size uint8 images."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)

    class PerSample(Dataset):
        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize((0.5,) * 3, (0.25,) * 3)])

        def __len__(self):
            return n

        def __getitem__(self, i):
            return self.tf(Image.fromarray(images[i])), int(labels[i])

    def rate(loader) -> float:
        it = iter(loader)
        next(it)  # workers started, first batch ready
        t0, seen = time.perf_counter(), 0
        for _ in range(batches):
            x, _ = next(it)
            seen += len(x)
        return seen / (time.perf_counter() - t0)

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    memory = MemoryLoader(x, torch.from_numpy(labels), cfg.data.batch_size, shuffle=True, pad=4,
                          flip=True)
    loader = DataLoader(PerSample(), cfg.data.batch_size, shuffle=True, num_workers=2,
                        persistent_workers=True)
    return {"memory_images_per_s": rate(memory), "dataloader_images_per_s": rate(loader)}


def bench(cfg: Config, steps: int = 30, rounds: int = 3, warmup: int = 5) -> dict:
    """Median images/s of both loops over `rounds` alternating rounds, their ratio, peak memory
    and (on GPU) MFU; then the input pipelines alone."""
    import tempfile

    train.quiet_lightning()
    torch.manual_seed(cfg.seed)
    cfg = derive(cfg, {"trainer.max_steps": warmup + steps})  # both schedules span the window
    built = build(cfg)
    dm, net = built.datamodule, built.net
    dm.setup()
    device = torch.device("cuda" if train.uses_cuda(cfg) else "cpu")
    bs = cfg.data.batch_size
    reslab_s, plain_s, windows = [], [], {"reslab": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            t, w = time_reslab(cfg, dm, copy.deepcopy(net), warmup, steps, f"{tmp}/r{r}")
            reslab_s.append(t)
            windows["reslab"].append(w)
            t, w = time_plain(cfg, dm, copy.deepcopy(net), warmup, steps, device)
            plain_s.append(t)
            windows["plain"].append(w)
    out = {"model": cfg.model.name, "depth": cfg.model.depth, "batch_size": bs,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "precision": cfg.trainer.precision, "steps": steps, "rounds": rounds,
           "reslab_images_per_s": bs / statistics.median(reslab_s),
           "plain_images_per_s": bs / statistics.median(plain_s),
           "reslab_ms_per_step": 1000 * statistics.median(reslab_s),
           "plain_ms_per_step": 1000 * statistics.median(plain_s)}
    out["ratio"] = out["reslab_images_per_s"] / out["plain_images_per_s"]
    for side, ws in windows.items():  # measured, per round: what each timed window really did
        out[f"{side}_optimizer_steps"] = [w.steps for w in ws]
        out[f"{side}_images"] = [w.images for w in ws]
    if device.type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        peak = next((v for k, v in PEAK_FLOPS.items() if k in out["device"]), None)
        if peak:
            macs = count_macs(net.cpu(), dm.input_size)
            out["mfu"] = 6 * macs * out["reslab_images_per_s"] / peak
    else:
        import resource

        out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.update(time_pipelines(cfg))
    out["pipeline_speedup"] = out["memory_images_per_s"] / out["dataloader_images_per_s"]
    return out


def format_result(r: dict) -> str:
    lines = [f"{r['model']} depth={r['depth']} batch={r['batch_size']} on {r['device']} "
             f"({r['precision']}), {r['rounds']} rounds x {r['steps']} steps",
             f"  reslab  {r['reslab_images_per_s']:10.1f} images/s  {r['reslab_ms_per_step']:8.2f} ms/step",
             f"  plain   {r['plain_images_per_s']:10.1f} images/s  {r['plain_ms_per_step']:8.2f} ms/step",
             f"  ratio   {r['ratio']:.3f} (reslab / plain)   peak memory {r['peak_memory_mb']:.0f} MB"]
    if "mfu" in r:
        lines.append(f"  MFU     {100 * r['mfu']:.1f} %")
    lines.append(f"  input pipeline: in-memory {r['memory_images_per_s']:,.0f} images/s vs "
                 f"DataLoader (per-sample, 2 workers) {r['dataloader_images_per_s']:,.0f} images/s "
                 f"= {r['pipeline_speedup']:.1f}x")
    return "\n".join(lines)
