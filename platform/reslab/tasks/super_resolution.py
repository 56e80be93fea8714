"""Single-image super-resolution as a LightningModule. The network maps a low-resolution batch
to `scale` times its size; the task owns the loss (L1 or L2), the metrics and the bicubic
baseline every result is read against.

Metrics follow the SR benchmarks' protocol (SRCNN, VDSR, EDSR): the output is clamped to [0, 1]
and rounded to 8 bits, then PSNR and SSIM are measured on the luma (Y of ITU-R BT.601 YCbCr)
with `scale` pixels cropped from each border, averaged over images. `psnr_bicubic` is bicubic
upsampling of the network's input measured the same way and `psnr_gain` = psnr - psnr_bicubic.
A 1-channel network (data.channels=y) gets and predicts Y directly; its whole-image batches carry
the RGB low-resolution image too, for the colour of the saved samples.

Testing writes the first SAMPLES test images, super-resolved and bicubic, as 8-bit PNGs to
`samples/` in the run directory (Task.samples, set by the run that tests); a Y network's are
rebuilt in colour from the predicted Y and the bicubic-upsampled Cb/Cr of the low-resolution
image (VDSR's figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import structural_similarity_index_measure

from reslab.config.schema import OptimConfig
from reslab.data.sr import rgb, to_y, ycbcr
from reslab.metrics import SUPER_RESOLUTION
from reslab.models.sr import bicubic
from reslab.tasks.base import Task

EVAL_METRICS = ("psnr", "ssim", "psnr_bicubic")
SAMPLES = 8          # test images saved as PNGs


class SuperResolutionTask(Task):
    METRICS = SUPER_RESOLUTION

    def __init__(self, net: nn.Module, scale: int, optim_cfg: OptimConfig,
                 channels_last: bool = False, compile: bool | str = False,
                 precision: str = "32-true", precision_why: str = ""):
        super().__init__(net, optim_cfg, channels_last, compile, precision, precision_why)
        self.scale = scale
        self.metrics = nn.ModuleDict({f"{split}_{m}": MeanMetric() for split in ("val", "test")
                                      for m in EVAL_METRICS})

    def loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr) if self.optim_cfg.loss == "l1" else F.mse_loss(sr, hr)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        lr, hr = batch
        loss = self.loss(self(lr), hr)
        self.track_step(loss, len(lr))
        return loss

    def _eval_step(self, split: str, batch, batch_idx: int = 0) -> None:
        lr, hr, *colour = batch
        sr = self(lr)
        self.log(f"{split}/loss", self.loss(sr, hr), on_epoch=True, sync_dist=True)
        with torch.autocast(sr.device.type, enabled=False):  # the protocol's numbers, in fp32
            sr = sr.float()
            for m, v in measure(sr, hr, lr, self.scale).items():
                self.metrics[f"{split}_{m}"].update(v)
            if split == "test":
                self.save_sample(batch_idx, lr, sr, colour[0] if colour else None)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch, batch_idx)

    def save_sample(self, batch_idx: int, lr: torch.Tensor, sr: torch.Tensor,
                    lr_rgb: torch.Tensor | None) -> None:
        """`samples/NNN_sr.png` and `NNN_bicubic.png` for the image's index in the test split
        (each rank writes its own images: WholeImages gives rank r every world-th one)."""
        index = self.global_rank + batch_idx * self.trainer.world_size
        if index >= SAMPLES or self.samples is None:
            return
        out = self.samples
        out.mkdir(parents=True, exist_ok=True)
        for name, image in (("sr", sr), ("bicubic", bicubic(lr, self.scale))):
            if lr_rgb is not None:
                image = in_colour(image, lr_rgb, self.scale)
            write_png(image[0], out / f"{index:03d}_{name}.png")

    def _eval_epoch_end(self, split: str) -> torch.Tensor:
        # MeanMetric already reduced across ranks; sync_dist only tells Lightning so.
        values = {m: self.metrics[f"{split}_{m}"].compute() for m in EVAL_METRICS}
        for m, v in values.items():
            self.log(f"{split}/{m}", v, prog_bar=m == "psnr", sync_dist=True)
            self.metrics[f"{split}_{m}"].reset()
        self.log(f"{split}/psnr_gain", values["psnr"] - values["psnr_bicubic"], sync_dist=True)
        return values["psnr"]

    def on_validation_epoch_end(self) -> None:
        self.log_best(self._eval_epoch_end("val"))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")


def measure(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, scale: int) -> dict:
    """Per-image PSNR, SSIM and bicubic PSNR (the protocol above). Called outside autocast: in
    bf16, SSIM's windowed variances (E[x^2] - E[x]^2) cancel; a VDSR's test SSIM read 0.72
    instead of 0.82 under bf16-mixed (its PSNR moved 0.005 dB)."""
    y_hr = luma(hr, scale)
    y_sr, y_bic = luma(quantize(sr), scale), luma(quantize(bicubic(lr, scale)), scale)
    return {"psnr": psnr(y_sr, y_hr), "psnr_bicubic": psnr(y_bic, y_hr),
            "ssim": torch.stack([structural_similarity_index_measure(a[None], b[None], data_range=1.0)
                                 for a, b in zip(y_sr, y_hr)])}


def quantize(x: torch.Tensor) -> torch.Tensor:
    """What saving the image as 8-bit would keep."""
    return x.clamp(0, 1).mul(255).round().div(255)


def luma(images: torch.Tensor, border: int) -> torch.Tensor:
    """Y of ITU-R BT.601 YCbCr (MATLAB's rgb2ycbcr) in [0, 1], without `border` pixels a side;
    1-channel images are Y already."""
    y = images if images.shape[1] == 1 else to_y(images)
    return y[..., border:-border, border:-border] if border else y


def in_colour(y: torch.Tensor, lr_rgb: torch.Tensor, scale: int) -> torch.Tensor:
    """RGB from a (super-resolved) Y and the bicubic-upsampled Cb/Cr of the low-res image."""
    cbcr = bicubic(ycbcr(lr_rgb)[:, 1:], scale)
    return rgb(torch.cat([y, cbcr], 1))


def write_png(image: torch.Tensor, path: Path) -> None:
    """A (C, H, W) image in [0, 1] as an 8-bit PNG (greyscale for one channel)."""
    from PIL import Image

    pixels = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(np.ascontiguousarray(pixels.squeeze(2) if pixels.shape[2] == 1 else pixels)).save(path)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) for images in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))
