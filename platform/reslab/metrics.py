"""The metric keys of each task, in one place: the task logs them, summary.json keeps them, and
`reslab compare`, sweeps, `reslab status` and the CLI summary show them. Keys are `split/name`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskMetrics:
    monitor: tuple[str, str]        # the metric best.ckpt follows, and its direction (min|max)
    summary: tuple[str, ...]        # what summary.json keeps from the logged metrics
    progress: tuple[str, ...]       # the one-line-per-epoch log
    columns: tuple[str, ...]        # what tables (compare, sweep) show


CLASSIFICATION = TaskMetrics(
    monitor=("val/err", "min"),
    summary=("train/loss", "train/err", "val/err", "val/err_best", "val/err_top5", "test/err",
             "test/err_top5"),
    progress=("train/loss", "train/err", "val/err", "val/err_best"),
    columns=("train/err", "val/err", "val/err_best", "test/err"),
)
SUPER_RESOLUTION = TaskMetrics(
    monitor=("val/psnr", "max"),
    summary=("train/loss", "val/loss", "val/psnr", "val/psnr_best", "val/ssim", "val/psnr_bicubic",
             "val/psnr_gain", "test/psnr", "test/ssim", "test/psnr_bicubic", "test/psnr_gain"),
    progress=("train/loss", "val/psnr", "val/psnr_bicubic", "val/psnr_best"),
    columns=("val/psnr", "val/psnr_best", "val/psnr_bicubic", "val/psnr_gain", "test/psnr"),
)
BY_TASK = {"classification": CLASSIFICATION, "super_resolution": SUPER_RESOLUTION}

# Every task's table columns, classification first: what compare and sweep tables may show.
COLUMNS = tuple(dict.fromkeys(k for m in BY_TASK.values() for k in m.columns))
# What the CLI prints after a run, in this order (the metric keys of both tasks, then the run's).
RUN_KEYS = ("params", "images_per_s", "wall_s")
SUMMARY = ("status", "epoch", "global_step", "train/loss", *COLUMNS, "test/psnr_gain", *RUN_KEYS)


def higher_is_better(metric: str) -> bool:
    """Error and loss go down; PSNR, SSIM, gains and accuracy go up."""
    name = metric.rsplit("/", 1)[-1]
    return any(name.startswith(k) for k in ("psnr", "ssim", "acc", "gain"))


def csv_row(logged: dict, step: int | None) -> dict:
    """A Lightning logging call (its values and `epoch`, and its `step`) as a metrics.csv row.
    Lightning gives fit's rows the index of the last optimizer step (0-based: global_step - 1)
    and the 0-based epoch, and a test after fit the steps and epochs done; metrics.csv (and a
    W&B history read back) says what the console says: steps done, and the 1-based epoch."""
    values = {k: v for k, v in logged.items() if k != "epoch"}
    epoch = int(logged["epoch"]) if logged.get("epoch") not in (None, "") else None
    if is_test(values) or step is None or epoch is None:
        return {"step": step, "epoch": epoch, **values}
    return {"step": step + 1, "epoch": epoch + 1, **values}


def is_test(row: dict) -> bool:
    return any(k.startswith("test/") for k in row)
