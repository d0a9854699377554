"""What a user waiting on pretraining sees: a tqdm bar over iterations and one log line per epoch.

Both are fed with the trainer's log records (the ``callback`` of :func:`dino_lib.train.loop.train`, or the lines of
``RUN_DIR/log.jsonl`` followed by :func:`dino_lib.launch.follow_log` while torchrun or Slurm runs the job), so the
command line, the launcher and the notebooks report the same numbers as ``log.jsonl``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("dino_lib.train")

__all__ = ["ProgressBar", "EpochLines", "epoch_line", "format_duration"]


class ProgressBar:
    """A tqdm bar (``tqdm.auto``: a widget in notebooks) over the run's iterations; set up by the ``start`` event."""

    def __init__(self, enabled: bool = True, desc: str = "pretrain") -> None:
        self.enabled, self.desc, self.bar, self.pos = enabled, desc, None, 0

    def __call__(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if rec.get("event") == "start":
            if self.bar is None:
                self.bar = tqdm(total=rec["total_iters"], initial=rec["start_it"], desc=self.desc, unit="it")
            self.pos = rec["start_it"]
        elif rec.get("type") == "iter" and self.bar is not None:
            self.bar.update(max(rec["it"] + 1 - self.pos, 0))
            self.pos = max(self.pos, rec["it"] + 1)
            self.bar.set_postfix(epoch=rec["epoch"], loss=f"{rec['loss']:.3f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_duration(seconds: float) -> str:
    """``3725`` -> ``'1h02m'``, ``75`` -> ``'1m15s'``, ``9.4`` -> ``'9s'``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def epoch_line(rec: dict[str, Any], epochs: int, eta_s: float | None) -> str:
    """One human line for an ``epoch`` record: loss, lr, teacher entropy, k-NN (when run), images/s and ETA."""
    parts = [f"epoch {rec['epoch'] + 1}/{epochs}"]
    for key, label, fmt in (
        ("train_loss", "loss", ".4f"),
        ("train_lr", "lr", ".3g"),
        ("teacher_entropy", "teacher entropy", ".3f"),
    ):
        if rec.get(key) is not None:
            parts.append(f"{label} {rec[key]:{fmt}}")
    if rec.get("ln_k") is not None and rec.get("teacher_entropy") is not None:
        parts[-1] += f" (ln K {rec['ln_k']:.2f})"
    knn = {k[4:-5]: v for k, v in rec.items() if k.startswith("knn_") and k.endswith("_top1") and v is not None}
    if knn:
        parts.append("k-NN top-1 " + " / ".join(f"{name} {v:.1f}%" for name, v in sorted(knn.items())))
    if rec.get("images_per_s") is not None:
        parts.append(f"{rec['images_per_s']:.1f} img/s")
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return ", ".join(parts)


class EpochLines:
    """Log :func:`epoch_line` for every ``epoch`` record; the ETA extrapolates the iterations done since ``start``."""

    def __init__(self, emit: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit or logger.info
        self.clock = clock
        self.t0: float | None = None
        self.start_it = 0
        self.total = 0
        self.niter_per_ep = 0

    def __call__(self, rec: dict[str, Any]) -> None:
        if rec.get("event") == "start":
            self.t0 = self.clock()
            self.start_it, self.total, self.niter_per_ep = rec["start_it"], rec["total_iters"], rec["niter_per_ep"]
        elif rec.get("type") == "epoch" and self.niter_per_ep:
            epochs = self.total // self.niter_per_ep
            done = (rec["epoch"] + 1) * self.niter_per_ep
            eta = None
            if self.t0 is not None and done > self.start_it:
                per_it = (self.clock() - self.t0) / (done - self.start_it)
                eta = per_it * max(self.total - done, 0)
            self.emit(epoch_line(rec, epochs, eta))
