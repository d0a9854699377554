"""The metrics step end to end: resolve the prediction folder, evaluate, write the tables.

Used by ``python -m dino_lib.metrics`` and by the ``segmentation_metrics`` notebook (which calls the same pieces and
displays them). :func:`run_metrics` writes under ``output_dir``::

    config.yaml                     resolved parameters + versions
    *.csv                           tables (dino_lib.metrics.report)

and returns the :class:`MetricsRun` from which :func:`dino_lib.viz.metrics.write_run_outputs` draws the figures
(``figures/*.png``) and the video (``video_<run>.mp4|gif``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from dino_lib.config import save_run_config
from dino_lib.metrics import io
from dino_lib.metrics.config import MetricsConfig
from dino_lib.metrics.evaluate import (
    RunResult,
    SemanticOptions,
    evaluate_semantic,
    load_frame,
)
from dino_lib.metrics.evaluate_davis import DavisResult, evaluate_davis
from dino_lib.metrics.report import DavisReport, SemanticReport, davis_report, semantic_report

__all__ = [
    "MetricsRun",
    "prepare",
    "evaluate",
    "overlay_frames",
    "run_metrics",
    "palette_for",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class MetricsRun:
    """Everything a metrics run produced; ``report`` holds the DataFrames."""

    cfg: MetricsConfig
    predictions: Path
    results: list[RunResult] | list[DavisResult]
    report: SemanticReport | DavisReport
    palette: np.ndarray
    class_names: list[str] | None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)

    def load(self, run: str, frame: str) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(image, ground truth, prediction) of one frame (for galleries and widgets)."""
        return load_frame(self.result(run), frame)

    def result(self, run: str) -> RunResult | DavisResult:
        for r in self.results:
            if r.name == run:
                return r
        raise KeyError(f"run {run!r} not evaluated; evaluated: {[r.name for r in self.results]}")


def palette_for(cfg: MetricsConfig) -> tuple[np.ndarray, list[str] | None]:
    """The dataset palette and class names: driving 27 classes (semantic) or DAVIS (instances)."""
    from dino_lib.data.palettes import DAVIS_PALETTE, DRIVING_CLASSES, DRIVING_PALETTE_256

    if cfg.mode == "davis":
        return DAVIS_PALETTE, cfg.class_names
    names = cfg.class_names
    if names is None and cfg.num_classes == len(DRIVING_CLASSES):
        names = list(DRIVING_CLASSES)
    return DRIVING_PALETTE_256, names


def prepare(cfg: MetricsConfig) -> Path:
    """The prediction folder of ``cfg``.

    Raises:
        ConfigError: ``predictions`` is null (the message says which step makes predictions).
        MetricsInputError: the folder does not exist.
    """
    return io.resolve_root(cfg.require_predictions())


def evaluate(cfg: MetricsConfig, predictions: Path) -> MetricsRun:
    """Evaluate and build the tables (nothing written)."""
    palette, names = palette_for(cfg)
    if cfg.mode == "davis":
        results = evaluate_davis(
            predictions,
            cfg.ground_truth,
            sequences=cfg.runs,
            resolution=cfg.davis_resolution,
            imageset=cfg.davis_imageset,
            bound_th=cfg.bound_th,
            missing=cfg.missing,
        )  # type: ignore[arg-type]
        report: SemanticReport | DavisReport = davis_report(results)
    else:
        label_frames = cfg.label_frames
        label_every = cfg.label_every
        opts = SemanticOptions(
            num_classes=cfg.num_classes,
            ignore_index=cfg.ignore_index,
            include_label_frames=cfg.include_label_frames,
            label_frames=label_frames,
            label_every=label_every,
            pred_ignore=cfg.pred_ignore,  # type: ignore[arg-type]
            unknown_ids=cfg.unknown_ids,
            missing=cfg.missing,
            resize_mismatched=cfg.resize_mismatched,  # type: ignore[arg-type]
            num_workers=cfg.num_workers,
        )
        results = evaluate_semantic(predictions, cfg.ground_truth, runs=cfg.runs, opts=opts)
        report = semantic_report(results, names)
    return MetricsRun(cfg, predictions, results, report, palette, names)


def overlay_frames(run: MetricsRun) -> list[tuple[str, str]]:
    """``cfg.overlays`` evenly spaced evaluated frames of the first run, as (run, frame)."""
    picks: list[tuple[str, str]] = []
    r = run.results[0]
    stems = [s for s, e in zip(r.stems, getattr(r, "evaluated", np.ones(len(r.stems), bool))) if e]
    if run.cfg.overlays and stems:
        for i in np.unique(np.linspace(0, len(stems) - 1, run.cfg.overlays).round().astype(int)):
            picks.append((r.name, stems[i]))
    return picks


def run_metrics(cfg: MetricsConfig) -> MetricsRun:
    """Inputs -> tables (CSV); returns the :class:`MetricsRun` (figures and video: ``dino_lib.viz.metrics``)."""
    out = Path(cfg.output_dir)
    run = evaluate(cfg, prepare(cfg))  # checks every input before anything is written
    save_run_config(cfg, out)
    run.files.update(run.report.save(out))
    return run
