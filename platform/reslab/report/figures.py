"""Figures for `reslab compare` (matplotlib, PNG) and the self-contained HTML report."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from reslab.metrics import higher_is_better  # noqa: E402
from reslab.report.runs import Run  # noqa: E402
from reslab.report.table import group, mean_std  # noqa: E402


def label(key: tuple, by: list[str]) -> str:
    """plain-56 / ResNet-56 (A) for the paper's grid; `k=v, ...` otherwise."""
    d = dict(zip(by, key))
    depth, shortcut = d.pop("model.depth", None), d.pop("model.shortcut", None)
    rest = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in d.items())
    if shortcut is None:
        name = f"depth {depth}" if depth is not None else ""
        return ", ".join(p for p in (name, rest) if p) or "all runs"
    name = f"plain-{depth}" if shortcut == "none" else f"ResNet-{depth} ({shortcut})"
    if depth is None:
        name = "plain" if shortcut == "none" else f"shortcut {shortcut}"
    return f"{name}, {rest}" if rest else name


PANEL_KEYS = ("model.shortcut", "model.global_residual")


def _panels(by: list[str]) -> tuple[str | None, list[str]]:
    """The paper's Fig. 6 layout: one panel per shortcut type (or global residual on/off), one
    line per everything else."""
    for key in PANEL_KEYS:
        if key in by and len(by) > 1:
            return key, [k for k in by if k != key]
    return None, by


def _panel_title(key: str | None, value) -> str:
    if key == "model.shortcut":
        return "plain networks" if value == "none" else f"residual, option {value}"
    if key == "model.global_residual":
        return "global residual (learns the residual)" if value else "no global residual (learns the image)"
    return ""


def _curve_style(runs: list[Run]) -> tuple[list[tuple[str, str]], str | None, float, str, str]:
    """What the curves show: (metric, line style) pairs per group, a baseline drawn once per
    panel, a scale, the y label and the title."""
    if any("val/psnr" in r.summary for r in runs):
        return ([("val/psnr", "-")], "val/psnr_bicubic", 1.0, "PSNR (dB)",
                "validation PSNR against bicubic upsampling (dotted)")
    return ([("train/err", "--"), ("val/err", "-")], None, 100.0, "error (%)",
            "training (dashed) and validation (solid) error")


def line_colors(runs: list[Run], line_keys: list[str]) -> dict[tuple, str]:
    """One colour per line (a depth) in every panel and figure: plain-20 and ResNet-20 (A) share
    ResNet-20's colour, so the panels compare at a glance (the paper's Fig. 6 does the same)."""
    keys = list(group(runs, line_keys))
    many = len(keys) > 10
    cmap = plt.get_cmap("viridis" if many else "tab10")
    return {k: to_hex(cmap(i / max(len(keys) - 1, 1) if many else i)) for i, k in enumerate(keys)}


def _integer_ticks(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and block indices


def _mean_curve(members: list[Run], key: str) -> tuple[list[int], list[float]]:
    per_epoch: dict[int, list[float]] = {}
    for r in members:
        for e, v in r.epochs(key):
            per_epoch.setdefault(e, []).append(v)
    epochs = sorted(per_epoch)
    return epochs, [mean_std(per_epoch[e])[0] for e in epochs]


def curves(runs: list[Run], by: list[str], out: Path) -> Path:
    return _save(curves_figure(runs, by), out / "curves.png")


def curves_figure(runs: list[Run], by: list[str]):
    """Training (dashed) and validation (solid) error against epoch (Fig. 6 layout), one colour
    per depth across the panels; PSNR and the bicubic baseline for super-resolution runs.
    Epochs are whole numbers on the axis, however few there are."""
    panel_key, line_keys = _panels(by)
    styles, baseline, scale, ylabel, title = _curve_style(runs)
    # plain-56 vs ResNet-56 (A): the shortcut is part of a line's name even inside its panel.
    named = [panel_key] if panel_key == "model.shortcut" else []
    panels = group(runs, [panel_key]) if panel_key else {(None,): runs}
    colors = line_colors(runs, line_keys)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False,
                             sharey=True)
    for ax, (pkey, members) in zip(axes[0], panels.items()):
        legend = []
        for lkey, lruns in group(members, line_keys).items():
            name = label(lkey + (pkey[0],) * len(named), line_keys + named)
            for metric, style in styles:
                x, y = _mean_curve(lruns, metric)
                if x:
                    ax.plot(x, [scale * v for v in y], style, color=colors[lkey],
                            label=f"{name} {metric.split('/')[0]}")
            legend.append(Line2D([], [], color=colors[lkey], label=name))
        if len(styles) > 1:  # the line style says train or val, once per panel
            legend += [Line2D([], [], color="0.35", linestyle=style, label=metric.split("/")[0])
                       for metric, style in styles]
        if baseline and (curve := _mean_curve(members, baseline))[0]:
            legend += ax.plot(*curve, ":", color="black", label=baseline.rsplit("_", 1)[-1])
        ax.set(title=_panel_title(panel_key, pkey[0]), xlabel="epoch", ylabel=ylabel)
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(handles=legend, fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    return fig


def final(runs: list[Run], by: list[str], metric: str, out: Path) -> Path:
    return _save(final_figure(runs, by, metric), out / "final.png")


def final_figure(runs: list[Run], by: list[str], metric: str):
    """Final training error and `metric` (and the gain over bicubic, for super-resolution) for
    every group with ± std over seeds (no error bar for a group of one run: its std is not 0
    but unknown); plain / non-residual groups in red. Error and gain are bars from 0, where 0
    means something; PSNR and SSIM are dots on an axis fitted to them (bars from 0 dB would
    make 30.0 and 30.2 dB look alike)."""
    groups = group(runs, by)
    names = [label(k, by) for k in groups]
    metrics = [m for m in dict.fromkeys(["train/err", metric, "val/psnr_gain"])
               if any(m in r.summary for r in runs)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6.0, 1.1 * len(names)) * len(metrics)
                                                      / 1.4, 4.2), squeeze=False)
    colors = ["C3" if "plain" in n or "global_residual=False" in n else "C0" for n in names]
    for ax, m in zip(axes[0], metrics):
        stats = [mean_std([r.summary.get(m) for r in members]) for members in groups.values()]
        scale = 1 if higher_is_better(m) else 100
        if from_zero(m):
            ax.bar(range(len(names)), [scale * s[0] for s in stats], color=colors)
        else:
            ax.scatter(range(len(names)), [scale * s[0] for s in stats], color=colors, zorder=3)
            ax.margins(x=0.3 / max(1, len(names)), y=0.25)
        if seeds := [i for i, s in enumerate(stats) if s[2] > 1]:
            ax.errorbar(seeds, [scale * stats[i][0] for i in seeds],
                        yerr=[scale * stats[i][1] for i in seeds], fmt="none", ecolor="black",
                        elinewidth=1, capsize=3)
        if m.endswith("gain"):
            ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        unit = "" if higher_is_better(m) else " (%)"
        better = "higher is better" if higher_is_better(m) else "lower is better"
        ax.set(title=f"final {m} ({better})", ylabel=f"{m}{unit}")
        ax.grid(axis="y", alpha=0.3)
    return fig


def from_zero(metric: str) -> bool:
    """Whether a bar from 0 says something: an error or a gain does; a PSNR or SSIM level
    (28-32 dB, 0.85-0.95) does not."""
    name = metric.rsplit("/", 1)[-1]
    return name.endswith("gain") or not name.startswith(("psnr", "ssim"))


def diagnostics(runs: list[Run], by: list[str], out: Path) -> Path | None:
    """Fig. 7: std of each block's residual-branch response, and its gradient norm, against
    block index, from the last measured step of every run (mean over seeds)."""
    last = {id(r): r.last_row_with("diag/") for r in runs}
    if not any(last.values()):
        return None
    panel_key, line_keys = _panels(by)
    colors = line_colors(runs, line_keys)  # the same colour per depth as in curves.png
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, members in group(runs, by).items():
        lkey = tuple(v for k, v in zip(by, key) if k != panel_key)
        for ax, kind in zip(axes, ("std", "grad")):
            per_block: dict[int, list[float]] = {}
            for r in members:
                for k, v in last[id(r)].items():
                    m = re.fullmatch(r"diag/block(\d+)_" + kind, k)
                    if m:
                        per_block.setdefault(int(m.group(1)), []).append(v)
            if per_block:
                x = sorted(per_block)
                style = "--" if "plain" in label(key, by) else "-"
                ax.plot(x, [mean_std(per_block[b])[0] for b in x], style, color=colors[lkey],
                        label=label(key, by), linewidth=1.2)
    axes[0].set(title="std of residual-branch responses (Fig. 7)", xlabel="block index",
                ylabel="std", yscale="log")
    axes[1].set(title="gradient norm of block parameters", xlabel="block index",
                ylabel="gradient L2 norm", yscale="log")
    for ax in axes:
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / "diagnostics.png")


def write_all(runs: list[Run], by: list[str], metric: str, out: Path) -> list[Path]:
    # A damaged summary.json's 1e308 overflows an error bar: drawn off the axes, not 6 numpy
    # warnings on stderr.
    with np.errstate(all="ignore"):
        files = [curves(runs, by, out), final(runs, by, metric, out)]
        if diag := diagnostics(runs, by, out):
            files.append(diag)
    return files


def run_groups(runs: list[Run], by: list[str]) -> list[tuple[str, list[str]]]:
    """Each group's label (as the figures name it) and its run directories, for the report."""
    return [(label(key, by), [str(r.path) for r in members])
            for key, members in group(runs, by).items()]


def _save(fig, path: Path) -> Path:
    with warnings.catch_warnings():  # many runs' legends leave no margin: the figure stays usable
        warnings.filterwarnings("ignore", "Tight layout not applied", UserWarning)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
