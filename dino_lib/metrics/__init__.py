"""Segmentation metrics: semantic IoU family (per class, mIoU over present classes, fw-IoU, pixel accuracy, decay
over frames since the last label, the fork-compatible number) and DAVIS J&F (docs/metrics.md).

Entry points: :func:`evaluate_semantic` / :func:`evaluate_davis` (folders -> per-frame results),
:func:`semantic_report` / :func:`davis_report` (results -> pandas tables), :func:`run_metrics` (the whole step from
a :class:`MetricsConfig`); ``python -m dino_lib.metrics --config FILE [key=value ...]``.
"""

from dino_lib.metrics.config import MetricsConfig
from dino_lib.metrics.davis import evaluate_sequence, f_measure, jaccard, seg2bmap, series_statistics
from dino_lib.metrics.evaluate import (
    RunResult,
    SemanticOptions,
    evaluate_semantic,
    evaluate_semantic_run,
    load_frame,
)
from dino_lib.metrics.evaluate_davis import DavisResult, evaluate_davis
from dino_lib.metrics.io import MetricsInputError
from dino_lib.metrics.pipeline import MetricsRun, run_metrics
from dino_lib.metrics.report import FORK_DEFINITION, DavisReport, SemanticReport, davis_report, semantic_report
from dino_lib.metrics.semantic import (
    IoUScores,
    confusion_matrix,
    frame_confusions,
    frames_since_label,
    miou_fork,
    scores_from_confusion,
)

__all__ = [
    "FORK_DEFINITION",
    "DavisReport",
    "DavisResult",
    "IoUScores",
    "MetricsConfig",
    "MetricsInputError",
    "MetricsRun",
    "RunResult",
    "SemanticOptions",
    "SemanticReport",
    "confusion_matrix",
    "davis_report",
    "evaluate_davis",
    "evaluate_semantic",
    "evaluate_semantic_run",
    "evaluate_sequence",
    "f_measure",
    "frame_confusions",
    "frames_since_label",
    "jaccard",
    "load_frame",
    "miou_fork",
    "run_metrics",
    "scores_from_confusion",
    "semantic_report",
    "seg2bmap",
    "series_statistics",
]
