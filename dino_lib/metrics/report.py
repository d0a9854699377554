"""Metric tables as pandas DataFrames and CSV files (docs/metrics.md).

Semantic tables (one row per run plus a ``pooled`` row that sums the confusion matrices of all runs):

* ``summary``: mIoU over present classes, frequency-weighted IoU, pixel accuracy (annotated frames excluded by
  default);
* ``per_class``: per-class IoU (NaN for absent classes) with pixel counts;
* ``curve`` / ``curve_per_class``: IoU as a function of frames since the last label frame;
* ``per_frame`` / ``frame_class_iou``: per-frame scores, for failure galleries;
* ``fork``: the fork-compatible number, in its own table with its definition spelled out.

DAVIS tables: ``global`` (J&F-Mean, J/F mean, recall, decay over all objects pooled), ``per_object`` (named
``<video>_<object id>`` like the official per-sequence CSV) and ``per_frame``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dino_lib.metrics.davis import series_statistics
from dino_lib.metrics.evaluate import RunResult
from dino_lib.metrics.evaluate_davis import DavisResult
from dino_lib.metrics.semantic import confusion_by_distance, miou_fork, per_frame_iou, scores_from_confusion
from dino_lib.utils.io import atomic_write_text

__all__ = ["FORK_DEFINITION", "POOLED", "SemanticReport", "semantic_report", "DavisReport", "davis_report", "write_csv"]

logger = logging.getLogger(__name__)

POOLED = "pooled"
FORK_DEFINITION = (
    "fork-compatible number (anthonyhu/dino compute_segmentation_metrics.py, torchmetrics 0.6 IoU): unweighted mean "
    "over all num_classes classes with absent classes scoring 0, annotated frames included, pixels predicted as the "
    "ignore id dropped; not comparable with miou_present"
)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV atomically (temporary file + rename)."""
    return atomic_write_text(path, df.to_csv(index=False))


def _names(class_names: Sequence[str] | None, c: int) -> list[str]:
    names = list(class_names) if class_names is not None else []
    return [names[i] if i < len(names) else str(i) for i in range(c)]


@dataclasses.dataclass
class SemanticReport:
    """All semantic tables; :meth:`save` writes one CSV per table."""

    summary: pd.DataFrame
    per_class: pd.DataFrame
    curve: pd.DataFrame
    curve_per_class: pd.DataFrame
    per_frame: pd.DataFrame
    frame_class_iou: pd.DataFrame
    fork: pd.DataFrame

    def save(self, output_dir: str | Path) -> dict[str, Path]:
        out = Path(output_dir)
        tables = {
            "summary": self.summary,
            "per_class": self.per_class,
            "iou_vs_distance": self.curve,
            "iou_vs_distance_per_class": self.curve_per_class,
            "per_frame": self.per_frame,
            "frame_class_iou": self.frame_class_iou,
            "fork_compatible": self.fork,
        }
        return {k: write_csv(v, out / f"{k}.csv") for k, v in tables.items()}


def _summary_row(run: str, cm: np.ndarray, n_frames: int, n_labels: int) -> dict[str, object]:
    s = scores_from_confusion(cm)
    return {
        "run": run,
        "frames_evaluated": n_frames,
        "label_frames": n_labels,
        "pixels": s.n_pixels,
        "classes_present": int(np.isfinite(s.iou).sum()),
        "miou_present": s.miou_present,
        "fw_iou": s.fw_iou,
        "pixel_acc": s.pixel_acc,
    }


def _curve_rows(run: str, cms: np.ndarray, distances: np.ndarray, names: list[str]) -> tuple[list, list]:
    rows, class_rows = [], []
    uniq, by_d = confusion_by_distance(cms, distances)
    counts = np.bincount(np.searchsorted(uniq, distances), minlength=uniq.size)
    for d, cm, n in zip(uniq, by_d, counts):
        s = scores_from_confusion(cm)
        rows.append(
            {
                "run": run,
                "distance": int(d),
                "frames": int(n),
                "miou_present": s.miou_present,
                "fw_iou": s.fw_iou,
                "pixel_acc": s.pixel_acc,
            }
        )
        for c in np.flatnonzero(np.isfinite(s.iou)):
            class_rows.append(
                {
                    "run": run,
                    "distance": int(d),
                    "class_id": int(c),
                    "class_name": names[c],
                    "iou": float(s.iou[c]),
                    "gt_pixels": int(s.gt_pixels[c]),
                }
            )
    return rows, class_rows


def semantic_report(results: Sequence[RunResult], class_names: Sequence[str] | None = None) -> SemanticReport:
    """Tables for a list of evaluated runs (see module docstring); the pooled row sums all runs' matrices."""
    if not results:
        raise ValueError("no evaluated runs to report")
    c = results[0].frame_cms.shape[1]
    names = _names(class_names, c)
    summary, per_class, curve, curve_cls, per_frame, frame_cls, fork = [], [], [], [], [], [], []
    for r in results:
        ev = r.evaluated
        cm = r.frame_cms[ev].sum(axis=0)
        summary.append(_summary_row(r.name, cm, int(ev.sum()), int(r.is_label.sum())))
        per_class += _class_rows(r.name, cm, names)
        rows, cls_rows = _curve_rows(r.name, r.frame_cms[ev], r.distances[ev], names)
        curve += rows
        curve_cls += cls_rows
        rows, cls_rows = _frame_rows(r, names)
        per_frame += rows
        frame_cls += cls_rows
        # every frame, annotated ones included (fork behaviour)
        fork.append(_fork_row(r.name, r.frame_cms.sum(axis=0), len(r.stems), int(r.pred_is_gt_copy.sum())))
    pooled_cm = sum((r.frame_cms[r.evaluated].sum(axis=0) for r in results), np.zeros((c, c + 1), dtype=np.int64))
    n_eval = sum(int(r.evaluated.sum()) for r in results)
    summary.append(_summary_row(POOLED, pooled_cm, n_eval, sum(int(r.is_label.sum()) for r in results)))
    per_class += _class_rows(POOLED, pooled_cm, names)
    frames = np.concatenate([r.frame_cms[r.evaluated] for r in results])
    rows, cls_rows = _curve_rows(POOLED, frames, np.concatenate([r.distances[r.evaluated] for r in results]), names)
    curve += rows
    curve_cls += cls_rows
    pooled_fork = sum((r.frame_cms.sum(axis=0) for r in results), np.zeros((c, c + 1), dtype=np.int64))
    copied = int(sum(r.pred_is_gt_copy.sum() for r in results))
    fork.append(_fork_row(POOLED, pooled_fork, sum(len(r.stems) for r in results), copied))
    frame_cols = ["run", "frame", "evaluated", "class_id", "class_name", "iou", "gt_pixels"]
    return SemanticReport(
        summary=pd.DataFrame(summary),
        per_class=pd.DataFrame(per_class),
        curve=pd.DataFrame(curve),
        curve_per_class=pd.DataFrame(
            curve_cls, columns=["run", "distance", "class_id", "class_name", "iou", "gt_pixels"]
        ),
        per_frame=pd.DataFrame(per_frame),
        frame_class_iou=pd.DataFrame(frame_cls, columns=frame_cols),
        fork=pd.DataFrame(fork),
    )


def _class_rows(run: str, cm: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class of a ``(C, C + 1)`` confusion matrix: IoU and pixel counts."""
    s = scores_from_confusion(cm)
    return [
        {
            "run": run,
            "class_id": k,
            "class_name": names[k],
            "iou": s.iou[k],
            "gt_pixels": int(s.gt_pixels[k]),
            "pred_pixels": int(s.pred_pixels[k]),
            "tp": int(s.tp[k]),
        }
        for k in range(cm.shape[0])
    ]


def _fork_row(run: str, cm: np.ndarray, frames: int, copied: int) -> dict[str, Any]:
    """The fork's mIoU of a confusion matrix summed over every frame (annotated frames included)."""
    c = cm.shape[0]
    return {
        "run": run,
        "miou_fork": miou_fork(cm, c),
        "frames_scored": frames,
        "label_frames_copied_from_gt": copied,
        "num_classes": c,
        "definition": FORK_DEFINITION,
    }


def _frame_rows(r: RunResult, names: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-frame scores of one run, and the IoU of every class present in each frame."""
    ious = per_frame_iou(r.frame_cms)  # (N, C)
    rows, class_rows = [], []
    for i, stem in enumerate(r.stems):
        fs = scores_from_confusion(r.frame_cms[i])
        evaluated = bool(r.evaluated[i])
        rows.append(
            {
                "run": r.name,
                "frame": stem,
                "position": int(r.positions[i]),
                "is_label": bool(r.is_label[i]),
                "evaluated": evaluated,
                "distance": int(r.distances[i]),
                "pixels": fs.n_pixels,
                "miou_present": fs.miou_present,
                "pixel_acc": fs.pixel_acc,
                "pred_is_gt_copy": bool(r.pred_is_gt_copy[i]),
            }
        )
        for k in np.flatnonzero(np.isfinite(ious[i])):
            class_rows.append(
                {
                    "run": r.name,
                    "frame": stem,
                    "evaluated": evaluated,
                    "class_id": int(k),
                    "class_name": names[k],
                    "iou": float(ious[i, k]),
                    "gt_pixels": int(r.frame_cms[i, k].sum()),
                }
            )
    return rows, class_rows


@dataclasses.dataclass
class DavisReport:
    """DAVIS tables; :meth:`save` writes ``global_results.csv``, ``per-sequence_results.csv``, ``per_frame.csv``."""

    global_: pd.DataFrame
    per_object: pd.DataFrame
    per_frame: pd.DataFrame

    def save(self, output_dir: str | Path) -> dict[str, Path]:
        out = Path(output_dir)
        return {
            "global_results": write_csv(self.global_, out / "global_results.csv"),
            "per_sequence_results": write_csv(self.per_object, out / "per-sequence_results.csv"),
            "per_frame": write_csv(self.per_frame, out / "davis_per_frame.csv"),
        }


def davis_report(results: Sequence[DavisResult], *, uint8_bin_ids: bool = False) -> DavisReport:
    """Official-style statistics: per object M/R/D of J and F, then means over all objects of all videos."""
    objects, frames = [], []
    for r in results:
        for k in range(r.j.shape[0]):
            js = series_statistics(r.j[k], uint8_bin_ids=uint8_bin_ids)
            fs = series_statistics(r.f[k], uint8_bin_ids=uint8_bin_ids)
            objects.append(
                {
                    "Sequence": f"{r.name}_{k + 1}",
                    "J-Mean": js.mean,
                    "F-Mean": fs.mean,
                    "J-Recall": js.recall,
                    "J-Decay": js.decay,
                    "F-Recall": fs.recall,
                    "F-Decay": fs.decay,
                }
            )
            for t, stem in enumerate(r.stems):
                frames.append(
                    {"sequence": r.name, "object": k + 1, "frame": stem, "J": float(r.j[k, t]), "F": float(r.f[k, t])}
                )
    per_object = pd.DataFrame(
        objects, columns=["Sequence", "J-Mean", "F-Mean", "J-Recall", "J-Decay", "F-Recall", "F-Decay"]
    )
    if per_object.empty:
        raise ValueError("no object to report: every first annotation was empty")
    g = {k: float(per_object[k].mean()) for k in ["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]}
    g = {"J&F-Mean": (g["J-Mean"] + g["F-Mean"]) / 2, **g}
    return DavisReport(
        global_=pd.DataFrame([g]),
        per_object=per_object,
        per_frame=pd.DataFrame(frames, columns=["sequence", "object", "frame", "J", "F"]),
    )
