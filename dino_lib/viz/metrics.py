"""The figures and the video of a metrics run (:class:`dino_lib.metrics.pipeline.MetricsRun`).

Under ``output_dir``::

    figures/overlay_<run>_<frame>.png, figures/iou_vs_distance.png, figures/failure_gallery.png,
    figures/confidence_<run>_<frame>.png (when soft probabilities exist)
    video_<run>.mp4|gif             GT | prediction | errors for every frame of the first run

The command-line twin and the ``segmentation_metrics`` notebook call :func:`write_run_outputs` (or its two steps)
after :func:`dino_lib.metrics.pipeline.run_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dino_lib.metrics import io
from dino_lib.metrics.evaluate import RunResult, load_frame
from dino_lib.metrics.evaluate_davis import DavisResult
from dino_lib.metrics.pipeline import MetricsRun, overlay_frames
from dino_lib.metrics.report import SemanticReport
from dino_lib.utils.io import atomic_write
from dino_lib.viz.segmentation import failure_gallery, plot_confidence, plot_overlays, side_by_side
from dino_lib.viz.video import write_video

__all__ = ["plot_iou_curve", "write_figures", "write_run_video", "write_run_outputs"]

Save = Callable[[Figure, str], None]


def _ignore_index(run: MetricsRun) -> int:
    return run.cfg.ignore_index if run.cfg.mode == "semantic" else 255


def plot_iou_curve(curve: pd.DataFrame) -> Figure:
    """mIoU (present classes) against frames since the last label frame, one line per run."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, df in curve.groupby("run", sort=False):
        ax.plot(df["distance"], df["miou_present"], marker="o", label=str(name))
    ax.set_xlabel("frames since the last label frame")
    ax.set_ylabel("mIoU (present classes)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _overlay_figures(run: MetricsRun, save: Save) -> None:
    """Overlays (and confidence maps when soft probabilities exist) of the frames of :func:`overlay_frames`."""
    for run_name, stem in overlay_frames(run):
        image, gt, pred = run.load(run_name, stem)
        title = f"{run_name} / {stem}"
        fig = plot_overlays(image, gt, pred, run.palette, run.class_names, title=title, ignore_index=_ignore_index(run))
        save(fig, f"overlay_{run_name}_{stem}")
        r = run.result(run_name)
        if isinstance(r, RunResult):
            probs = io.read_probs(r.pred_dir, stem, r.prob_classes)
            if probs is not None:
                save(plot_confidence(image, probs, title=title), f"confidence_{run_name}_{stem}")


def _semantic_figures(run: MetricsRun, report: SemanticReport, save: Save) -> None:
    """The decay curve and (with ``gallery_per_class``) the failure gallery."""
    save(plot_iou_curve(report.curve), "iou_vs_distance")
    fci = report.frame_class_iou
    if run.cfg.gallery_per_class and not fci[fci["evaluated"]].empty:
        fig = failure_gallery(
            fci,
            run.load,
            run.palette,
            run.class_names,
            per_class=run.cfg.gallery_per_class,
            max_classes=run.cfg.gallery_classes,
            ignore_index=run.cfg.ignore_index,
        )
        save(fig, "failure_gallery")


def write_figures(run: MetricsRun) -> dict[str, Path]:
    """Overlays, confidence maps, the decay curve and the failure gallery as PNGs under ``output_dir/figures``."""
    out = Path(run.cfg.output_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def save(fig: Figure, name: str) -> None:
        files[name] = atomic_write(out / f"{name}.png", lambda p: fig.savefig(p, format="png", dpi=90))
        plt.close(fig)

    _overlay_figures(run, save)
    if isinstance(run.report, SemanticReport):
        _semantic_figures(run, run.report, save)
    return files


def write_run_video(run: MetricsRun, result: RunResult | DavisResult | None = None) -> Path | None:
    """GT | prediction | errors for every frame of a run as ``output_dir/video_<run>.<mp4|gif>``."""
    if run.cfg.video is None:
        return None
    result = result or run.results[0]
    ignore = _ignore_index(run)

    def frames() -> Iterator[np.ndarray]:
        for stem in result.stems:
            image, gt, pred = load_frame(result, stem)
            yield side_by_side(image, gt, pred, run.palette, with_errors=True, ignore_index=ignore)

    return write_video(frames(), Path(run.cfg.output_dir) / f"video_{result.name}.{run.cfg.video}", fps=run.cfg.fps)


def write_run_outputs(run: MetricsRun) -> dict[str, Path]:
    """:func:`write_figures` then :func:`write_run_video`; records the files in ``run.files`` (returned)."""
    run.files.update(write_figures(run))
    video = write_run_video(run)
    if video is not None:
        run.files["video"] = video
    return run.files
