"""Pretraining curves from ``RUN_DIR/log.jsonl``: loss, lr, wd, teacher momentum, temperature, entropy.

The loss and the teacher entropy are drawn with the ln K reference line: a loss flat at ln K means uniform
teacher targets, an entropy near 0 one-hot collapse, an entropy at ln K uniform collapse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from dino_lib.train.monitors import log_frames

__all__ = ["plot_training_curves", "LivePlot"]

_PANELS = (
    ("loss", "loss"),
    ("lr", "learning rate"),
    ("wd", "weight decay"),
    ("momentum", "teacher momentum"),
    ("teacher_temp", "teacher temperature"),
    ("teacher_entropy", "teacher entropy (nats)"),
)


def plot_training_curves(log_path: str | Path, fig: Any = None) -> Any:
    """A 2 x 3 figure of the per-iteration records (epoch means as dots on the loss panel)."""
    iters, epochs = log_frames(log_path)
    if fig is None:
        fig = plt.figure(figsize=(13, 6))
    fig.clf()
    axes = fig.subplots(2, 3)
    for ax, (key, title) in zip(axes.ravel(), _PANELS):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if len(iters) and key in iters:
            ax.plot(iters["it"], iters[key], lw=1.2)
            if key in ("loss", "teacher_entropy") and "ln_k" in iters:
                ax.axhline(float(iters["ln_k"].iloc[-1]), color="grey", ls="--", lw=1, label="ln K")
                ax.legend(loc="best", fontsize=8)
            if key == "loss" and len(epochs) and "iterations" in epochs:
                niter = int(epochs["iterations"].max())
                ax.plot((epochs["epoch"] + 1) * niter - 1, epochs["train_loss"], "o", ms=4, label="epoch mean")
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


class LivePlot:
    """A log-record callback that redraws the curves in a notebook every ``every`` iteration records."""

    def __init__(self, log_path: str | Path, every: int = 10) -> None:
        from IPython.display import display

        self.log_path, self.every, self.n = Path(log_path), every, 0
        self.fig = plt.figure(figsize=(13, 6))
        plt.close(self.fig)  # shown through the display handle only
        self.handle = display(self.fig, display_id=True)

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("type") == "iter":
            self.n += 1
        if (record.get("type") == "iter" and self.n % self.every == 0) or record.get("type") == "epoch":
            plot_training_curves(self.log_path, self.fig)
            if self.handle is not None:
                self.handle.update(self.fig)
