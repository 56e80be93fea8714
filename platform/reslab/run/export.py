"""A trained network out of reslab: TorchScript, ONNX or a plain state dict, with a JSON beside it
that says how to feed it (normalisation, input size), what it answers (classes) and which model
and run it is. Every export is checked before it is put in place: its outputs on a sample batch
(another batch size than the one it was traced with) equal the checkpoint's network's."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab import __version__, data, fileio, models
from reslab.config.load import load, to_dict
from reslab.config.schema import Config
from reslab.data.base import ArrayData, Normalizer, keep_classes
from reslab.errors import TrainingError, UserError
from reslab.run import weights
from reslab.run.build import data_stats, model_kwargs
from reslab.tracking import checkpoint, outputs, records
from reslab.tracking.rundir import EXPORT, RunDir, find_run

FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx",
         "state_dict": "model.state_dict.pt"}
# What each dataset stores and what maps it to the [0, 1] floats the network's preprocessing
# starts from: a deployment must scale its own images the same way (digits are 0-16, not 0-255).
RAW_PIXELS = {
    "digits": {"stored": "integers 0-16 (scikit-learn's 8x8 digits)", "divide_by": 16},
    "cifar10": {"stored": "8-bit values 0-255", "divide_by": 255},
    "cifar100": {"stored": "8-bit values 0-255", "divide_by": 255},
    "imagefolder": {"stored": "8-bit RGB 0-255 (any image PIL decodes; greyscale as RGB)",
                    "divide_by": 255},
    "synthetic": {"stored": "uniform random floats in [0, 1)", "divide_by": 1},
    "photos": {"stored": "8-bit RGB 0-255", "divide_by": 255},
    "sr_folder": {"stored": "8-bit RGB 0-255 (greyscale as RGB)", "divide_by": 255},
}
LUMA = ("channels y: the luma of the [0, 1] RGB image, ITU-R BT.601 as MATLAB's rgb2ycbcr: "
        "Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255")
ATOL, RTOL = 1e-5, 1e-4     # float32 kernels differ in summation order, never by more
TRACE_BATCH, CHECK_BATCH = 2, 5


@dataclass(frozen=True)
class Source:
    run: RunDir
    ckpt: Path
    cfg: Config
    net: nn.Module            # the checkpoint's weights, eval mode
    build_args: dict[str, Any]  # models.build_model(cfg.model.name, **build_args) makes the same net
    datamodule: Any
    global_step: int | None     # of the checkpoint
    epoch: int | None


def export(path: str | Path, fmt: str = "torchscript", out: str | Path | None = None,
           force: bool = False) -> dict:
    """Write the run's (or checkpoint's) network in `fmt`; returns the two paths and the check."""
    if fmt not in FILES:
        raise UserError(f"--format must be one of {', '.join(FILES)}, got '{fmt}'")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"ONNX export needs the {' and '.join(missing)} package(s), which are "
                            "not installed: pip install 'reslab[export]'")
    if not Path(path).exists():
        raise UserError(f"{path} does not exist (give a run directory or a checkpoint in one)")
    run = find_run(path)
    target = output_path(run, fmt, out, force)
    src = open_source(path)  # reads only (checkpoints are replaced atomically): every refusal
    # Into the run's export/ folder is a write to the run: not while a process trains in it.
    with records.locked(run) if run.path in target.parents else contextlib.nullcontext():
        return write(src, fmt, target)


def write(src: Source, fmt: str, target: Path) -> dict:
    """The network in `fmt` at `target` and its JSON beside it, both put in place only after
    the exported model's outputs matched the checkpoint's."""
    gen = torch.Generator().manual_seed(0)
    size = tuple(src.datamodule.input_size)
    example, sample = (torch.randn(n, *size, generator=gen) for n in (TRACE_BATCH, CHECK_BATCH))
    with torch.no_grad():
        expected = src.net(sample)
    meta_path = target.with_suffix(".json")
    with fileio.writing_to(target.parent, "--out"), \
            fileio.replacing(target, meta_path) as (tmp, tmp_meta):
        check = WRITERS[fmt](src, example, sample, expected, tmp)
        meta = metadata(src, fmt, target, check, list(expected.shape[1:]))
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
    return {"model": target, "meta": meta_path, "check": check["sentence"]}


def open_source(path: str | Path) -> Source:
    """The run, its checkpoint (best.ckpt, else last.ckpt, or the file given) and the network
    with the checkpoint's weights: every refusal here, before anything is written."""
    run = find_run(path)
    ckpt = run.checkpoint_to_read(Path(path) if Path(path).is_file() else None)
    cfg = load([run.config])
    dm = data.build_datamodule(cfg.data, cfg.seed, data_stats(cfg, weights.resolve(cfg)))
    build_args = {**data.model_args(dm), **model_kwargs(cfg)}
    net = models.build_model(cfg.model.name, **build_args)
    loaded = checkpoint.load(ckpt)
    try:
        net.load_state_dict(checkpoint.net_state(checkpoint.state_dict(loaded, ckpt)))
    except RuntimeError as e:
        raise checkpoint.CheckpointError(
            f"checkpoint {ckpt} does not fit the run's model {cfg.model.name} "
            f"({str(e).splitlines()[1].strip()[:100]}; was config.yaml edited?)") from None
    return Source(run, ckpt, cfg, net.eval(), build_args, dm, loaded.get("global_step"),
                  loaded.get("epoch"))


def output_path(run: RunDir, fmt: str, out: str | Path | None, force: bool) -> Path:
    """--out as given, a folder (empty, or any with --force) for the default file name, or
    RUN_DIR/export/<default name>; the model file and the JSON beside it checked by the one
    output rule (outputs.output_path)."""
    own = {"area": EXPORT, "owner": run.path}  # into a run's records: this run's export/ only
    if out is None:
        p = run.exports / FILES[fmt]
    else:
        p = outputs.resolved_output(out, "--out", folder=False)
        if p.is_dir() or str(out).endswith(("/", os.sep)):
            outputs.output_path(p, "--out", folder=True, force=force, **own)  # empty, or --force
            p = p / FILES[fmt]
    target = outputs.output_path(p, "--out", folder=False, force=force, **own)
    if p.suffix == ".json":
        raise UserError(f"--out {out} ends in .json, the name of the metadata file written beside "
                        "the model; name the model file (e.g. model.onnx) or a folder")
    kind = {".onnx": "onnx", ".pt": "torch", ".pth": "torch"}.get(p.suffix.lower())
    if kind and kind != ("onnx" if fmt == "onnx" else "torch"):  # an .onnx file of TorchScript
        raise UserError(f"--out {out} ends in {p.suffix}, not the name of a file in the {fmt} "
                        f"format; give the --format it names, or a name ending in "
                        f"{Path(FILES[fmt]).suffix}")
    outputs.output_path(target.with_suffix(".json"), "--out", folder=False, force=force, **own)
    return target


def in_memory(save: Callable[[io.BytesIO], None]) -> bytes:
    """What `save(buffer)` writes, to be written by Python's own file write: on a full disk
    torch.save raises a RuntimeError and torch.jit.save aborts the process (exit 134)."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def write_torchscript(src: Source, example, sample, expected, tmp: Path) -> dict:
    with _quiet():
        traced = torch.jit.trace(src.net, example, check_trace=False)
        tmp.write_bytes(in_memory(lambda f: torch.jit.save(traced, f)))
        got = torch.jit.load(str(tmp), map_location="cpu")(sample)
    return compare(got, expected, "torch.jit.load")


def write_state_dict(src: Source, example, sample, expected, tmp: Path) -> dict:
    tmp.write_bytes(in_memory(lambda f: torch.save(src.net.state_dict(), f)))
    fresh = models.build_model(src.cfg.model.name, **src.build_args)
    fresh.load_state_dict(torch.load(tmp, map_location="cpu", weights_only=True))
    with torch.no_grad():
        got = fresh.eval()(sample)
    return compare(got, expected, "reslab.models.build_model + load_state_dict(weights_only=True)")


def write_onnx(src: Source, example, sample, expected, tmp: Path) -> dict:
    batch = torch.export.Dim("batch")
    with _quiet():
        program = torch.onnx.export(src.net, (example,), dynamo=True, external_data=False,
                                    input_names=["input"], output_names=[output_name(src)],
                                    dynamic_shapes=({0: batch},), verbose=False)
    tmp.write_bytes(program.model_proto.SerializeToString())
    import onnx

    onnx.checker.check_model(str(tmp))
    if importlib.util.find_spec("onnxruntime") is None:
        return {"runtime": None, "sentence": "the ONNX file is well-formed (onnx.checker), but its "
                "outputs were not compared with the checkpoint's: onnxruntime is not installed "
                "(pip install 'reslab[export]')"}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": sample.numpy()})[0])
    return compare(got, expected, f"onnxruntime {onnxruntime.__version__}")


WRITERS = {"torchscript": write_torchscript, "onnx": write_onnx, "state_dict": write_state_dict}


def compare(got: torch.Tensor, expected: torch.Tensor, runtime: str) -> dict:
    """Equal within float32 tolerance, else TrainingError (exit 1; nothing is put in place)."""
    diff = (got.float() - expected).abs().max().item() if got.shape == expected.shape else None
    if diff is None or not torch.allclose(got.float(), expected, atol=ATOL, rtol=RTOL):
        found = f"max |difference| {diff:.3g}" if diff is not None else f"shape {tuple(got.shape)}"
        raise TrainingError(f"the exported model's outputs differ from the checkpoint's ({found}, "
                            f"allowed {ATOL} + {RTOL} x |value|, through {runtime}); nothing written")
    return {"runtime": runtime, "batch": len(expected), "max_abs_diff": diff, "atol": ATOL,
            "rtol": RTOL, "sentence": f"outputs equal the checkpoint's on a batch of "
            f"{len(expected)} (max |difference| {diff:.2g}, through {runtime})"}


def metadata(src: Source, fmt: str, target: Path, check: dict, out_shape: list[int]) -> dict:
    cfg, dm = src.cfg, src.datamodule
    task = data.task_of(cfg.data.name)
    return {
        "format": fmt, "file": target.name, "task": task,
        "model": {"name": cfg.model.name, **src.build_args},
        "input": {"name": "input", "shape": ["batch", *dm.input_size], "dtype": "float32"},
        "output": {"name": output_name(src), "shape": ["batch", *out_shape]},
        "preprocessing": preprocessing(cfg, dm),
        "classes": classes(cfg, dm) if task == "classification" else None,
        "check": {k: v for k, v in check.items() if k != "sentence"},
        "run": str(src.run.path), "checkpoint": str(src.ckpt),
        "global_step": src.global_step, "epoch": src.epoch,
        "versions": {"reslab": __version__, "torch": torch.__version__},
        "config": to_dict(cfg),
    }


def output_name(src: Source) -> str:
    return "logits" if data.task_of(src.cfg.data.name) == "classification" else "image"


def preprocessing(cfg: Config, dm) -> dict:
    """How an image becomes the model's input: the dataset's stored values scaled to [0, 1]
    floats (RAW_PIXELS), then (x - mean) / std."""
    raw = RAW_PIXELS[cfg.data.name]
    base = {"pixels": f"float32 in [0, 1], NCHW: the stored {raw['stored']} divided by "
                      f"{raw['divide_by']}", "raw": raw, "formula": "(x - mean) / std",
            "input_size": list(dm.input_size)}
    if data.task_of(cfg.data.name) == "super_resolution" and str(cfg.data.channels) == "y":
        base["channels"] = LUMA
    if hasattr(dm, "resize_size"):  # image folders: torchvision's eval transform
        return {**base, "normalize": "channel", "mean": list(dm.mean), "std": list(dm.std),
                "resize_size": dm.resize_size, "center_crop": dm.input_size[-1]}
    if not isinstance(dm, ArrayData):
        return {**base, "normalize": "none", "mean": 0.0, "std": 1.0}
    norm = training_normalizer(cfg, dm)
    squeeze = norm.kind == "channel"  # per channel: C numbers; pixel_mean: a (C, H, W) image
    return {**base, "normalize": str(norm.kind),
            "mean": (norm.mean.flatten() if squeeze else norm.mean).tolist(),
            "std": (norm.std.flatten() if squeeze else norm.std).tolist()}


def training_normalizer(cfg: Config, dm: ArrayData) -> Normalizer:
    """The normalisation ArrayData.setup fits on the run's training split (the checkpoint does not
    hold it, so it is fitted again on the same images; tests compare it with setup's)."""
    if cfg.data.normalize == "none":
        return Normalizer(cfg.data.normalize, torch.zeros(1, *dm.input_size))
    dm.check()
    train_x, train_y, _, _ = dm.load()
    if cfg.data.classes:
        train_x, _ = keep_classes(train_x, train_y, list(cfg.data.classes))
    _, train_idx = dm.split(len(train_x))
    return Normalizer(cfg.data.normalize, train_x[train_idx])


def classes(cfg: Config, dm) -> list:
    """What each output means: class folder names, else the dataset's label of each output."""
    if hasattr(dm, "class_names"):
        return dm.class_names("train")
    return list(cfg.data.classes) if cfg.data.classes else list(range(dm.num_classes))


@contextlib.contextmanager
def _quiet():
    """torch's exporters print progress and deprecation notices (TorchScript is deprecated in
    favour of torch.export, still the format C++ and mobile runtimes load)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
