"""DAVIS 2017 semi-supervised J&F, re-implemented from the official definitions.

Region similarity J is the IoU of binary object masks (1 when the union is empty). Contour accuracy F is the
F-measure of boundary pixels matched within a tolerance: boundaries come from a ``seg2bmap``-style thinning (each
pixel compared with its right, bottom and bottom-right neighbours), the tolerance radius is
``ceil(0.008 * image diagonal)`` pixels and matching is a dilation with a disk of that radius. A pixel lies in the
disk dilation of a boundary exactly when its Euclidean distance to the nearest boundary pixel is <= the radius, so the
dilation is computed with one exact Euclidean distance transform (scipy) instead of a morphological pass; the test
suite checks this against a disk dilation and a brute-force pairwise-distance matcher.

Statistics per object (mean, recall, decay) follow the official evaluator; the global numbers pool all objects of all
sequences, and J&F-Mean = (J-Mean + F-Mean) / 2.

References:
    Perazzi et al., "A Benchmark Dataset and Evaluation Methodology for Video Object Segmentation", CVPR 2016;
    Pont-Tuset et al., "The 2017 DAVIS Challenge on Video Object Segmentation", arXiv:1704.00675;
    davisvideochallenge/davis2017-evaluation (definitions only).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import numpy as np
from scipy import ndimage

__all__ = [
    "BOUND_TH",
    "seg2bmap",
    "boundary_radius",
    "jaccard",
    "f_measure",
    "object_masks",
    "evaluate_sequence",
    "SeriesStats",
    "series_statistics",
]

logger = logging.getLogger(__name__)

BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal (official default)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask (the classic ``seg2bmap`` thinning).

    A pixel is on the boundary when it differs from its right (east), bottom (south) or bottom-right (south-east)
    neighbour, with neighbours outside the image taken as background. The last row only compares with the right
    neighbour, the last column only with the bottom neighbour, and the bottom-right pixel is never a boundary, so
    boundaries sit half a pixel towards the origin.

    Args:
        mask: (H, W) array, non-zero = foreground.

    Returns:
        (H, W) bool boundary map.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap expects a 2-D mask, found shape {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Tolerance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * sqrt(H^2 + W^2))`` (854x480 -> 8)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def _within(boundary: np.ndarray, radius: int) -> np.ndarray:
    """Disk dilation of a boundary map: pixels within Euclidean distance ``radius`` of a boundary pixel."""
    if not boundary.any():
        return np.zeros_like(boundary)
    # distance_transform_edt measures the distance to the nearest zero, so invert: boundary pixels become zeros.
    return ndimage.distance_transform_edt(~boundary) <= radius


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |P ∩ G| / |P ∪ G| of two binary masks; 1 when both are empty (official convention)."""
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return np.count_nonzero(p & g) / union


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Contour accuracy F of two binary masks (the official boundary measure).

    Precision = share of predicted boundary pixels within the tolerance of the GT boundary; recall = share of GT
    boundary pixels within the tolerance of the predicted boundary; F = 2PR / (P + R). Edge cases: both boundaries
    empty -> P = R = 1; empty prediction -> P = 1, R = 0; empty GT -> P = 0, R = 1; P + R = 0 -> F = 0.
    """
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    radius = boundary_radius(p.shape, bound_th)
    pb = seg2bmap(p)
    gb = seg2bmap(g)
    n_p = int(pb.sum())
    n_g = int(gb.sum())
    if n_p == 0 and n_g == 0:
        precision = recall = 1.0
    elif n_p == 0:
        precision, recall = 1.0, 0.0
    elif n_g == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = np.count_nonzero(pb & _within(gb, radius)) / n_p
        recall = np.count_nonzero(gb & _within(pb, radius)) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def object_masks(labels: np.ndarray, n_objects: int) -> np.ndarray:
    """(K, ..., H, W) bool masks of object ids 1..K from an id map; ids > K are ignored (background)."""
    ids = np.arange(1, n_objects + 1).reshape((n_objects,) + (1,) * labels.ndim)
    return labels[None] == ids


def evaluate_sequence(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    bound_th: float = BOUND_TH,
    name: str = "sequence",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one sequence with the official frame and object conventions.

    Objects are ids 1..N with N = the maximum id of the **first** GT frame; GT void (255) counts as background; the
    first and last frames are not evaluated. A predicted id above N is an error (the official evaluator aborts).

    Args:
        gt: (T, H, W) ground-truth id maps of all frames.
        pred: (T, H, W) predicted id maps of the same frames.
        bound_th: boundary tolerance (fraction of the diagonal, or pixels when >= 1).
        name: sequence name used in messages.

    Returns:
        (J, F), each (N, T - 2) float64.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"{name}: ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    if gt.shape[0] < 3:
        raise ValueError(f"{name}: {gt.shape[0]} frames; DAVIS evaluation skips the first and last frame, need >= 3")
    gt = np.where(gt == 255, 0, gt)  # void -> background in the semi-supervised task
    n_obj = int(gt[0].max())
    n_res = int(pred.max())
    if n_res > n_obj:
        frame = int(np.argmax(pred.reshape(pred.shape[0], -1).max(axis=1) > n_obj))
        raise ValueError(
            f"{name}: prediction frame {frame} contains object id {n_res} but the first annotation has only "
            f"{n_obj} object(s); predicted ids must be 0..{n_obj} (remap or drop the extra objects)"
        )
    if n_obj == 0:
        logger.warning("%s: the first annotation has no object; nothing to evaluate", name)
        return np.zeros((0, gt.shape[0] - 2)), np.zeros((0, gt.shape[0] - 2))
    g = object_masks(gt[1:-1], n_obj)  # (N, T-2, H, W)
    p = object_masks(pred[1:-1], n_obj)
    inter = np.count_nonzero(g & p, axis=(2, 3))
    union = np.count_nonzero(g | p, axis=(2, 3))
    j = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    f = np.empty_like(j)
    for k in range(n_obj):  # boundary matching is per mask; the EDT itself is vectorised C code
        for t in range(g.shape[1]):
            f[k, t] = f_measure(p[k, t], g[k, t], bound_th)
    return j, f


@dataclasses.dataclass(frozen=True)
class SeriesStats:
    """Mean, recall and decay of one object's per-frame J or F series (official ``db_statistics``)."""

    mean: float
    recall: float
    decay: float


def series_statistics(values: np.ndarray, *, n_bins: int = 4, uint8_bin_ids: bool = False) -> SeriesStats:
    """Official statistics of a per-frame series.

    * mean = NaN-mean of the values;
    * recall = mean of (value > 0.5);
    * decay = NaN-mean of the first quarter minus that of the last quarter, with bin boundaries
      ``round(linspace(1, n, 5) + 1e-10) - 1`` and bins ``values[ids[i] : ids[i+1] + 1]`` (adjacent bins share
      their boundary frame).

    Args:
        values: (n,) per-frame J or F of one object.
        n_bins: number of decay bins (4 in the official evaluator).
        uint8_bin_ids: cast the bin boundaries to uint8 as the official code does; they wrap for series longer than
            256 frames (irrelevant for DAVIS). Off by default so long semantic runs stay correct; the two agree on
            every series of <= 256 frames.
    """
    x = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # NaN-mean of an all-NaN bin -> NaN, as upstream
        mean = float(np.nanmean(x)) if x.size else float("nan")
        recall = float(np.nanmean(x > 0.5)) if x.size else float("nan")
        ids = np.round(np.linspace(1, x.size, n_bins + 1) + 1e-10) - 1
        if uint8_bin_ids:
            ids = ids.astype(np.uint8)
        elif x.size > 256:
            logger.debug("series of %d frames: the official uint8 bin ids would wrap; using exact ids", x.size)
        ids = ids.astype(np.int64)
        bins = [x[ids[i] : ids[i + 1] + 1] for i in range(n_bins)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return SeriesStats(mean=mean, recall=recall, decay=decay)
