"""Semantic IoU family: hand-computed fixtures, the fork-compatible number, decay curves."""

from __future__ import annotations

import numpy as np
import pytest

from dino_lib.metrics import semantic
from dino_lib.metrics.semantic import (
    confusion_by_distance,
    confusion_matrix,
    frame_confusions,
    frames_since_label,
    miou_fork,
    per_frame_iou,
    scores_from_confusion,
)

# 2 x 4 frame, classes 0..2, ignore 255.
GT = np.array([[0, 0, 1, 1], [0, 2, 1, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [0, 0, 255, 2]], dtype=np.uint8)
# Scored pixels (GT != 255): 7. (g, p) pairs: (0,0) (0,1) (1,1) (1,1) (0,0) (2,0) (1,255)
# class 0: TP 2, GT 3, predicted 3 [(0,0) x2, (2,0)]           -> union 4 -> IoU 1/2
# class 1: TP 2, GT 3 (the predicted-ignore pixel is a miss), predicted 3 -> union 4 -> IoU 1/2
# class 2: TP 0, GT 1, predicted 0 (its only prediction sits on a GT-ignore pixel) -> union 1 -> IoU 0
# mIoU(present) = (1/2 + 1/2 + 0) / 3 = 1/3; pixel accuracy = 4/7; fw-IoU = 3/7 * 1/2 + 3/7 * 1/2 + 1/7 * 0 = 3/7


def test_hand_computed_iou_family():
    s = scores_from_confusion(confusion_matrix(GT, PRED, 3))
    np.testing.assert_allclose(s.iou, [0.5, 0.5, 0.0])
    assert s.miou_present == pytest.approx(1 / 3)
    assert s.pixel_acc == pytest.approx(4 / 7)
    assert s.fw_iou == pytest.approx(3 / 7)
    assert s.n_pixels == 7
    np.testing.assert_array_equal(s.gt_pixels, [3, 3, 1])
    np.testing.assert_array_equal(s.pred_pixels, [3, 3, 0])


def test_absent_class_is_nan_and_excluded_from_the_default_mean():
    # a 4th class absent from GT and prediction: NaN, and mIoU(present) unchanged (1/3)
    s = scores_from_confusion(confusion_matrix(GT, PRED, 4))
    assert np.isnan(s.iou[3])
    assert s.miou_present == pytest.approx(1 / 3)


def test_fork_number_hand_computed():
    # the fork drops pixels predicted 255: class 1 then has GT 2, TP 2, predicted 3 -> IoU 2/3;
    # with 4 classes absent class 3 scores 0: (1/2 + 2/3 + 0 + 0) / 4 = 7/24
    cm = confusion_matrix(GT, PRED, 4)
    assert miou_fork(cm, 4) == pytest.approx(7 / 24)
    # 27-class mean as in the fork: (1/2 + 2/3) / 27
    assert miou_fork(cm, 27) == pytest.approx((0.5 + 2 / 3) / 27)


def test_predicted_ignore_counts_as_wrong_not_dropped():
    gt = np.zeros((1, 4), np.uint8)
    pred = np.array([[0, 0, 255, 255]], np.uint8)
    s = scores_from_confusion(confusion_matrix(gt, pred, 2))
    assert s.iou[0] == pytest.approx(0.5)  # 2 TP over a union of 4 (2 misses predicted as ignore)
    assert s.pixel_acc == pytest.approx(0.5)
    assert miou_fork(confusion_matrix(gt, pred, 1), 1) == pytest.approx(1.0)  # the fork rewards predicting ignore


def test_bincount_matches_a_loop_reference(monkeypatch):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, size=(5, 9, 11))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 6, size=gt.shape)
    pred[rng.random(gt.shape) < 0.1] = 255
    cms = frame_confusions(gt, pred, 6)
    ref = np.zeros((5, 6, 7), np.int64)
    for n, y, x in np.ndindex(gt.shape):
        g, p = gt[n, y, x], pred[n, y, x]
        if g != 255:
            ref[n, g, p if p < 6 else 6] += 1
    np.testing.assert_array_equal(cms, ref)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 6), ref.sum(0))
    # frames processed in several bincount chunks (pixel budget) give the same matrices
    monkeypatch.setattr(semantic, "_PIXEL_BUDGET", 2 * 9 * 11)
    np.testing.assert_array_equal(frame_confusions(gt, pred, 6), ref)


def test_out_of_range_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([[3]]), np.array([[0]]), 3)


def test_per_frame_iou():
    ious = per_frame_iou(frame_confusions(np.stack([GT, GT]), np.stack([PRED, GT]), 4))
    np.testing.assert_allclose(ious[0, :3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(ious[1, :3], [1.0, 1.0, 1.0])
    assert np.isnan(ious[:, 3]).all()


def test_frames_since_label():
    np.testing.assert_array_equal(frames_since_label(7, [0, 4]), [0, 1, 2, 3, 0, 1, 2])
    # frames before the first label (backward propagation) count their distance to it
    np.testing.assert_array_equal(frames_since_label(5, [2]), [2, 1, 0, 1, 2])
    # explicit sources (bidirectional propagation between keyframes 0 and 4)
    np.testing.assert_array_equal(frames_since_label(5, [0, 4], source_frames=[0, 0, 0, 4, 4]), [0, 1, 2, 1, 0])
    with pytest.raises(ValueError):
        frames_since_label(3, [])


def test_confusion_by_distance_sums_frames():
    cms = frame_confusions(np.stack([GT, GT, GT]), np.stack([GT, PRED, PRED]), 3)
    d, by_d = confusion_by_distance(cms, np.array([0, 2, 2]))
    np.testing.assert_array_equal(d, [0, 2])
    np.testing.assert_array_equal(by_d[1], cms[1] + cms[2])
    assert scores_from_confusion(by_d[0]).miou_present == pytest.approx(1.0)
