"""Semantic segmentation scores from confusion matrices: per-class IoU, mIoU, fw-IoU, pixel accuracy, decay curves.

Everything is derived from confusion matrices accumulated with one ``np.bincount`` per batch of frames.
A confusion matrix here has shape ``(C, C + 1)``: rows are ground-truth classes, columns
predicted classes, and the extra last column counts pixels whose prediction is the ignore id (or any id outside
``0 .. C-1``). Ground-truth ignore pixels are never counted. Keeping the extra column lets one matrix serve both
definitions:

* the default scores count a predicted ignore as an error (a false negative of the ground-truth class), so
  predicting "ignore" is never rewarded;
* the fork-compatible number (``anthonyhu/dino``, torchmetrics 0.6 ``IoU`` with 27 classes) drops those pixels, which
  is the same as discarding the extra column before computing the scores.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

__all__ = [
    "IoUScores",
    "frame_confusions",
    "confusion_matrix",
    "scores_from_confusion",
    "miou_fork",
    "frames_since_label",
    "confusion_by_distance",
    "per_frame_iou",
]

logger = logging.getLogger(__name__)


_PIXEL_BUDGET = 1 << 22  # pixels per vectorised bincount (~4 M; bounds the int64 temporaries to ~100 MB)


def _bincount_frames(gt: np.ndarray, pred: np.ndarray, c: int, ignore_index: int, drop_pred_ignore: bool) -> np.ndarray:
    """(n, H*W) ids -> (n, C, C + 1) counts with one ``np.bincount``."""
    n = gt.shape[0]
    g = gt.astype(np.int64)
    valid = g != ignore_index
    if drop_pred_ignore:
        valid &= pred != ignore_index
    bad = valid & ((g < 0) | (g >= c))
    if bad.any():
        ids = np.unique(g[bad])
        raise ValueError(
            f"ground-truth ids {ids[:10].tolist()} outside 0..{c - 1} (and not the ignore id {ignore_index})"
        )
    p = pred.astype(np.int64)
    p[(p < 0) | (p >= c)] = c  # every out-of-range prediction lands in the extra column
    g += np.arange(n, dtype=np.int64)[:, None] * c  # frame offset: row index into the stacked (n*C) rows
    flat = g * (c + 1) + p  # (n, H*W) cell index into (n, C, C+1)
    return np.bincount(flat[valid], minlength=n * c * (c + 1)).reshape(n, c, c + 1)


def frame_confusions(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int = 255,
    drop_pred_ignore: bool = False,
) -> np.ndarray:
    """Confusion matrix of every frame of a stack, in one vectorised ``np.bincount``.

    Args:
        gt: ground-truth class ids, shape (N, H, W) (or (H, W) for a single frame); ``ignore_index`` is excluded.
            Other ids must lie in ``0 .. num_classes-1`` (validated by :mod:`dino_lib.metrics.io` on reading).
        pred: predicted class ids, same shape. Ids outside ``0 .. num_classes-1`` (the ignore id) go to the extra
            column.
        num_classes: C.
        ignore_index: ground-truth id that is not scored.
        drop_pred_ignore: also exclude pixels predicted as ``ignore_index`` (the fork's metric).

    Returns:
        int64 array (N, C, C + 1) (or (C, C + 1) for a single frame); rows = GT class, columns = predicted class,
        last column = predicted ignore/out-of-range id.

    Raises:
        ValueError: shape mismatch or a ground-truth id outside the class range.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    single = gt.ndim == 2
    if single:
        gt, pred = gt[None], pred[None]
    n = gt.shape[0]
    c = int(num_classes)
    hw = int(np.prod(gt.shape[1:]))
    step = max(1, _PIXEL_BUDGET // max(hw, 1))  # bounded temporaries: a few frames at 1080p, many small ones
    cms = np.empty((n, c, c + 1), dtype=np.int64)
    for s0 in range(0, n, step):
        cms[s0 : s0 + step] = _bincount_frames(
            gt[s0 : s0 + step].reshape(-1, hw), pred[s0 : s0 + step].reshape(-1, hw), c, ignore_index, drop_pred_ignore
        )
    return cms[0] if single else cms


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, **kwargs: object) -> np.ndarray:
    """Confusion matrix (C, C + 1) summed over all frames of ``gt``/``pred`` (see :func:`frame_confusions`)."""
    cms = frame_confusions(gt, pred, num_classes, **kwargs)  # type: ignore[arg-type]
    return cms if cms.ndim == 2 else cms.sum(axis=0)


@dataclasses.dataclass(frozen=True)
class IoUScores:
    """Scores of one confusion matrix.

    Attributes:
        iou: per-class IoU (C,), NaN where the class is absent from both GT and prediction (empty union).
        tp, gt_pixels, pred_pixels: per-class true positives, GT pixel counts and predicted pixel counts (C,).
        miou_present: NaN-mean of ``iou`` over classes with a non-empty union (the default mIoU).
        fw_iou: frequency-weighted IoU, weights = GT pixel share of each class.
        pixel_acc: correct pixels / valid GT pixels (predicted ignore counts as wrong).
        n_pixels: valid GT pixels scored.
    """

    iou: np.ndarray
    tp: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray
    miou_present: float
    fw_iou: float
    pixel_acc: float
    n_pixels: int


def scores_from_confusion(cm: np.ndarray) -> IoUScores:
    """IoU family from a (C, C + 1) confusion matrix; the extra column counts as wrong (default mode).

    IoU_c = TP_c / (TP_c + FP_c + FN_c), where FN_c includes pixels of class c predicted as ignore.
    """
    c = cm.shape[0]
    cm = cm.astype(np.float64)
    tp = np.diag(cm[:, :c])
    gt_pixels = cm.sum(axis=1)  # includes the predicted-ignore column: those pixels are misses
    pred_pixels = cm[:, :c].sum(axis=0)
    union = gt_pixels + pred_pixels - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else float("nan")
    total = gt_pixels.sum()
    if total > 0:
        freq = gt_pixels / total
        has_gt = gt_pixels > 0  # these have union > 0, so their IoU is defined
        fw = float((freq[has_gt] * iou[has_gt]).sum())
        acc = float(tp.sum() / total)
    else:
        fw = acc = float("nan")
    return IoUScores(
        iou=iou,
        tp=tp.astype(np.int64),
        gt_pixels=gt_pixels.astype(np.int64),
        pred_pixels=pred_pixels.astype(np.int64),
        miou_present=miou,
        fw_iou=fw,
        pixel_acc=acc,
        n_pixels=int(total),
    )


def miou_fork(cm: np.ndarray, num_classes: int | None = None) -> float:
    """The fork-compatible mIoU (``anthonyhu/dino`` ``compute_segmentation_metrics.py``, torchmetrics 0.6 ``IoU``).

    Pixels predicted as ignore are dropped (the extra column is discarded), a class with an empty union scores 0
    (torchmetrics' ``absent_score``) and the unweighted mean runs over **all** ``num_classes`` classes. The caller
    accumulates ``cm`` over every frame of the run, annotated frames included. This number is capped at
    (present classes) / num_classes even for perfect predictions; always report it labelled as the fork number.
    """
    c = cm.shape[0]
    num_classes = c if num_classes is None else int(num_classes)
    if num_classes < c:
        raise ValueError(f"num_classes={num_classes} is smaller than the confusion matrix ({c} classes)")
    sq = cm[:, :c].astype(np.float64)  # predicted-ignore pixels dropped
    tp = np.diag(sq)
    union = sq.sum(axis=1) + sq.sum(axis=0) - tp
    iou = np.where(union > 0, tp / np.where(union > 0, union, 1), 0.0)
    return float(iou.sum() / num_classes)


def frames_since_label(
    n_frames: int,
    label_frames: np.ndarray | list[int],
    source_frames: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Temporal distance of every frame from the annotation it was propagated from.

    Args:
        n_frames: frames in the run (positions 0 .. n_frames-1 in the sorted frame list).
        label_frames: positions of the annotated (key)frames.
        source_frames: optional per-frame position of the keyframe each frame was propagated from (from the run
            manifest); when given, the distance is ``|i - source[i]|`` and covers bidirectional propagation.

    Returns:
        int64 (n_frames,): 0 on annotated frames; otherwise frames since the last annotated frame at or before the
        frame; frames before the first annotated frame (backward propagation) get their distance to it.
    """
    idx = np.arange(n_frames, dtype=np.int64)
    if source_frames is not None:
        src = np.asarray(source_frames, dtype=np.int64)
        if src.shape != (n_frames,):
            raise ValueError(f"source_frames has {src.shape[0]} entries for {n_frames} frames")
        return np.abs(idx - src)
    labels = np.unique(np.asarray(label_frames, dtype=np.int64))
    if labels.size == 0:
        raise ValueError("no annotated frames given: cannot measure frames since the last label")
    last = np.searchsorted(labels, idx, side="right") - 1  # index of the last label <= i, -1 if none
    before_first = last < 0
    dist = idx - labels[np.maximum(last, 0)]
    dist[before_first] = labels[0] - idx[before_first]
    return dist


def confusion_by_distance(frame_cms: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum per-frame confusion matrices (N, C, C+1) by distance; returns (distances present, (D, C, C+1))."""
    distances = np.asarray(distances, dtype=np.int64)
    uniq, inverse = np.unique(distances, return_inverse=True)
    out = np.zeros((uniq.size,) + frame_cms.shape[1:], dtype=np.int64)
    np.add.at(out, inverse, frame_cms)
    return uniq, out


def per_frame_iou(frame_cms: np.ndarray) -> np.ndarray:
    """Per-frame, per-class IoU (N, C) with NaN where a class is absent from both GT and prediction of a frame."""
    c = frame_cms.shape[1]
    cms = frame_cms.astype(np.float64)
    tp = np.diagonal(cms[:, :, :c], axis1=1, axis2=2)  # (N, C)
    union = cms.sum(axis=2) + cms[:, :, :c].sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
