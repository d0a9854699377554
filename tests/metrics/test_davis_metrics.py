"""DAVIS J&F: hand-computed J, F and statistics, and independent re-implementations of F."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from dino_lib.metrics.davis import (
    boundary_radius,
    evaluate_sequence,
    f_measure,
    jaccard,
    seg2bmap,
    series_statistics,
)


def _square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_seg2bmap_hand_computed():
    # 2x2 square at rows 1-2, cols 1-2 of a 4x4 image. Each pixel is compared with its east, south and south-east
    # neighbours; the last row only with east, the last column only with south; the corner is never a boundary.
    # row 0: differs from its south/south-east neighbours at cols 0,1,2 -> 1 1 1 0
    # row 1: foreground col 1 vs east (1) equal, vs south-east (row 2, col 2 = 1) equal -> only cols 0 and 2
    # row 2: cols 0..2 differ from south/east/south-east -> 1 1 1 0; row 3 and col 3: nothing differs -> 0
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(seg2bmap(_square((4, 4), 1, 3, 1, 3)), expected)


def test_seg2bmap_last_row_and_column_rules():
    full = np.ones((3, 3), bool)
    assert not seg2bmap(full).any()  # neighbours outside the image do not create a frame border
    m = np.zeros((3, 3), bool)
    m[2, 1] = True  # bottom row pixel: last row compares with east only -> (2,0) and (2,1) differ from their east
    b = seg2bmap(m)
    assert b[2, 0] and b[2, 1] and not b[2, 2]


def test_boundary_radius_diagonal_rule():
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_radius((10, 10)) == 1  # ceil(0.113)
    assert boundary_radius((100, 100)) == 2  # ceil(1.131)
    assert boundary_radius((10, 10), bound_th=3) == 3  # >= 1 means pixels


def test_jaccard_hand_computed():
    p = _square((5, 5), 0, 2, 0, 2)  # 4 px
    g = _square((5, 5), 0, 2, 0, 3)  # 6 px containing p
    assert jaccard(p, g) == pytest.approx(4 / 6)
    assert jaccard(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0  # empty union -> 1
    assert jaccard(p, np.zeros((5, 5))) == 0.0


def test_f_measure_hand_computed():
    # 10x10 image -> radius ceil(0.008 * 14.14) = 1: a disk of radius 1 is the 4-neighbourhood (diagonals are out).
    # A single pixel at (r, c) has the 2x2 boundary {r-1, r} x {c-1, c}. GT pixel (4, 4) -> rows 3-4, cols 3-4.
    gt = np.zeros((10, 10), bool)
    gt[4, 4] = True
    # prediction at (4, 6): boundary cols 5-6; col 5 is 1 px from GT col 4 -> P = 2/4; GT col 4 is 1 px from col 5
    # -> R = 2/4; F = 1/2
    p = np.zeros_like(gt)
    p[4, 6] = True
    assert f_measure(p, gt) == pytest.approx(0.5)
    # prediction at (5, 6): boundary rows 4-5, cols 5-6. Only (4,5) is within 1 px of the GT boundary ((4,4));
    # (5,5) is sqrt(2) away. Only GT (4,4) is within 1 px of the prediction boundary. P = R = 1/4 -> F = 1/4
    p = np.zeros_like(gt)
    p[5, 6] = True
    assert f_measure(p, gt) == pytest.approx(0.25)
    # prediction at (4, 7): boundary cols 6-7, 2 px away from everything -> P = R = 0 -> F = 0
    p = np.zeros_like(gt)
    p[4, 7] = True
    assert f_measure(p, gt) == 0.0


def test_f_measure_edge_cases():
    empty = np.zeros((6, 6), bool)
    obj = _square((6, 6), 1, 4, 1, 4)
    assert f_measure(empty, empty) == 1.0  # P = R = 1
    assert f_measure(empty, obj) == 0.0  # P = 1, R = 0 -> F = 0
    assert f_measure(obj, empty) == 0.0  # P = 0, R = 1 -> F = 0
    assert f_measure(obj, obj) == 1.0


def _bmap_loop(m: np.ndarray) -> np.ndarray:
    """seg2bmap written pixel by pixel from the definition (independent of the vectorised version)."""
    h, w = m.shape

    def at(y, x):
        return bool(m[y, x]) if y < h and x < w else False

    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            v = bool(m[y, x])
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                b[y, x] = v != at(y, x + 1)
            elif x == w - 1:
                b[y, x] = v != at(y + 1, x)
            else:
                b[y, x] = v != at(y, x + 1) or v != at(y + 1, x) or v != at(y + 1, x + 1)
    return b


def _f_brute_force(p: np.ndarray, g: np.ndarray, radius: int) -> float:
    """F with boundary matching by explicit pairwise distances (|a - b|^2 <= r^2)."""
    pb, gb = np.argwhere(_bmap_loop(p)), np.argwhere(_bmap_loop(g))
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0
    d2 = ((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1)
    precision = (d2.min(axis=1) <= radius**2).mean()
    recall = (d2.min(axis=0) <= radius**2).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _f_disk_dilation(p: np.ndarray, g: np.ndarray, radius: int) -> float:
    """F with the official recipe: boundaries dilated by a scikit-image disk of the tolerance radius."""
    se = disk(radius).astype(bool)
    pb, gb = seg2bmap(p), seg2bmap(g)
    if not pb.any() and not gb.any():
        return 1.0
    if not pb.any() or not gb.any():
        return 0.0
    precision = (pb & ndimage.binary_dilation(gb, se)).sum() / pb.sum()
    recall = (gb & ndimage.binary_dilation(pb, se)).sum() / gb.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound_th", [0.008, 2, 3])
def test_f_measure_matches_brute_force_and_disk_dilation(seed, bound_th):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 20, size=2)
    # blobby random masks: smoothed noise thresholded, so boundaries have corners, holes and diagonals
    g = ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5
    p = ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5
    np.testing.assert_array_equal(seg2bmap(g), _bmap_loop(g))
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(h, w))
    expected = _f_brute_force(p, g, radius)
    assert f_measure(p, g, bound_th) == pytest.approx(expected, abs=1e-12)
    assert _f_disk_dilation(p, g, radius) == pytest.approx(expected, abs=1e-12)


def test_series_statistics_hand_computed():
    # n = 8: ids = round(linspace(1, 8, 5) + 1e-10) - 1 = round([1, 2.75, 4.5, 6.25, 8]) - 1 = [0, 2, 4, 5, 7]
    # bins x[0:3] and x[5:8]: means 1.0 and (0.4 + 0.2 + 0.0) / 3 = 0.2 -> decay 0.8
    x = np.array([1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.0])
    s = series_statistics(x)
    assert s.mean == pytest.approx(5.0 / 8)
    assert s.recall == pytest.approx(5 / 8)  # 1, 1, 1, 0.8, 0.6 are > 0.5
    assert s.decay == pytest.approx(0.8)
    # official uint8 bin ids agree on short series and wrap on long ones
    assert series_statistics(x, uint8_bin_ids=True) == s
    long = np.linspace(1, 0, 300)
    assert series_statistics(long).decay != pytest.approx(series_statistics(long, uint8_bin_ids=True).decay)


def test_evaluate_sequence_conventions():
    # 4 frames of 10x10; objects 1..N with N = max id of the first frame (2); frame 0 and 3 are not evaluated.
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[:, 2:5, 2:5] = 1
    gt[:, 6:9, 6:9] = 2
    gt[1, 0, 0] = 255  # void -> background
    pred = gt.copy()
    pred[1, 0, 0] = 0
    pred[2, 6:9, 6:9] = 0  # object 2 missed in frame 2
    pred[0] = 0  # the first frame is not scored
    j, f = evaluate_sequence(gt, pred)
    assert j.shape == (2, 2)
    np.testing.assert_allclose(j, [[1, 1], [1, 0]])  # object 2 in frame 2: empty prediction -> J 0
    np.testing.assert_allclose(f, [[1, 1], [1, 0]])  # empty prediction, GT not -> P 1, R 0 -> F 0


def test_evaluate_sequence_rejects_unknown_object_ids():
    gt = np.zeros((3, 6, 6), np.uint8)
    gt[:, 1:3, 1:3] = 1
    pred = gt.copy()
    pred[1, 4, 4] = 3
    with pytest.raises(ValueError, match=r"frame 1 contains object id 3 .* only 1 object"):
        evaluate_sequence(gt, pred, name="vid")
