"""Evaluate DAVIS-layout results folders with the official semi-supervised J&F conventions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from dino_lib.metrics import davis as davis_lib
from dino_lib.metrics import io
from dino_lib.metrics.io import MetricsInputError
from dino_lib.utils.progress import progress_bar

__all__ = ["DavisResult", "evaluate_davis"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DavisResult:
    """J and F of one video: (N objects, T - 2 frames), with the evaluated frame names."""

    name: str
    j: np.ndarray
    f: np.ndarray
    stems: list[str]
    gt_paths: list[Path]
    pred_paths: list[Path]
    image_dir: Path | None


def evaluate_davis(
    predictions: str | Path,
    davis_root: str | Path,
    *,
    sequences: Sequence[str] | None = None,
    resolution: str = "480p",
    imageset: str | None = "2017/val.txt",
    bound_th: float = davis_lib.BOUND_TH,
    missing: Literal["error", "intersect"] = "error",
) -> list[DavisResult]:
    """Semi-supervised DAVIS evaluation of ``predictions/<video>/<frame>.png``.

    Every GT frame except the first and last needs a prediction of the GT size (``missing=intersect`` evaluates
    only the videos whose predictions are complete, with a warning, instead of raising).
    """
    root = io.resolve_root(davis_root)
    pred_root = io.resolve_root(predictions)
    videos = io.davis_sequences(root, resolution, imageset)
    if sequences:
        unknown = [s for s in sequences if s not in videos]
        if unknown:
            raise MetricsInputError(f"videos {unknown} not found under {root}/Annotations/{resolution}")
        videos = {s: videos[s] for s in sequences}
    results = []
    for name, ann_dir in videos.items():
        gt_files = io.list_frames(ann_dir)
        pred_dir = pred_root / name
        pred_files = io.list_frames(pred_dir) if pred_dir.is_dir() else []
        optional = {gt_files[0].stem, gt_files[-1].stem} if gt_files else set()
        try:
            pairs = io.match_frames(gt_files, pred_files, where=f"video {name}", optional=optional)
        except MetricsInputError:
            if missing == "intersect":
                logger.warning("video %s: predictions incomplete; not evaluated (missing=intersect)", name)
                continue
            raise
        j, f = davis_lib.evaluate_sequence(*_read_video(name, pairs), bound_th=bound_th, name=name)
        image_dir = root / "JPEGImages" / resolution / name
        results.append(
            DavisResult(
                name=name,
                j=j,
                f=f,
                stems=[s for s, _, _ in pairs][1:-1],
                gt_paths=[g for _, g, _ in pairs][1:-1],
                pred_paths=[p for _, _, p in pairs][1:-1],  # type: ignore[misc]
                image_dir=image_dir if image_dir.is_dir() else None,
            )
        )
    if not results:
        raise MetricsInputError(f"no video of {root} could be evaluated against {pred_root}")
    return results


def _read_video(name: str, pairs: list[tuple[str, Path, Path | None]]) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` annotations and results of one video (a frame without a result reads as background)."""
    gts, preds = [], []
    for _, g, p in progress_bar(pairs, desc=f"{name} (metrics)", unit="frame"):
        gt = io.read_index_map(g, role="DAVIS annotation")
        pred = io.read_index_map(p, role="DAVIS result") if p is not None else np.zeros_like(gt)
        if pred.shape != gt.shape:
            raise MetricsInputError(
                f"result {p} is {pred.shape} but annotation {g} is {gt.shape}; DAVIS results "
                f"must have exactly the annotation size"
            )
        gts.append(gt)
        preds.append(pred)
    return np.stack(gts), np.stack(preds)
