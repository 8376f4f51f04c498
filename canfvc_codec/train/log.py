"""The log of a training run: ``log.csv`` and ``curves.png`` in the checkpoint folder.

A row of ``log.csv`` sums up a *window* of steps of one phase (:data:`LOG_EVERY_STEPS` steps or
:data:`LOG_EVERY_SECONDS` seconds, whichever comes first): the step after it, the phase, the mean
loss and bpp, the PSNR of the mean MSE, the geometric mean λ and the training seconds so far.
Rows are kept in memory and appended at each checkpoint; ``curves.png`` is drawn from the file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from canfvc_codec.train import losses
from canfvc_codec.train.phases import StepResult

LOG_NAME = "log.csv"
CURVES_NAME = "curves.png"
LOG_FIELDS = ("step", "phase", "loss", "bpp", "psnr", "lambda", "seconds")
LOG_EVERY_STEPS = 10
LOG_EVERY_SECONDS = 60.0

# A window of steps: each step's figures and its seconds.
Window = list[tuple[StepResult, float]]


def window_psnr(window: Window) -> float:
    """The PSNR of the window's mean MSE."""
    return losses.psnr(float(np.mean([r.mse for r, _ in window])))


def log_row(window: Window, psnr: float, step: int, phase: str, seconds: float) -> dict:
    """The row of ``window``: its mean figures, ``psnr`` that of its mean MSE."""
    results = [r for r, _ in window]
    return {
        "step": step,
        "phase": phase,
        "loss": f"{np.mean([r.loss for r in results]):.6g}",
        "bpp": f"{np.mean([r.bpp for r in results]):.6g}",
        "psnr": f"{psnr:.4f}",
        "lambda": f"{math.exp(np.mean([math.log(r.lmbda) for r in results])):.1f}",
        "seconds": f"{seconds:.1f}",
    }


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to the log at ``path``, with the header when the file is new."""
    if not rows:
        return
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Loss, bpp and PSNR against the step, one colour per phase."""
    if not log_path.is_file():
        return
    # matplotlib is imported on first use: a run that never checkpoints needs none of it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    figure, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    names = list(dict.fromkeys(r["phase"] for r in rows))
    for name in names:
        picked = [r for r in rows if r["phase"] == name]
        steps = [int(r["step"]) for r in picked]
        for axis, key in zip(axes, ("loss", "bpp", "psnr"), strict=True):
            axis.plot(steps, [float(r[key]) for r in picked], ".-", label=name, markersize=3)
    axes[0].set_yscale("log")
    for axis, label in zip(axes, ("loss", "bpp (estimated)", "PSNR (dB)"), strict=True):
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    axes[0].legend(fontsize=8, ncol=4)
    figure.tight_layout()
    part = png_path.with_name(png_path.stem + ".part.png")
    figure.savefig(part, dpi=90)
    plt.close(figure)
    part.replace(png_path)
