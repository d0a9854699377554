"""Segmentation figures: colours, overlays, error maps, confidence maps, legend and failure gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from dino_lib.viz.segmentation import (
    ERROR_COLOURS,
    blend,
    colourise,
    confidence_map,
    error_codes,
    failure_gallery,
    legend_handles,
    plot_confidence,
    plot_overlays,
    side_by_side,
)

PAL = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
GT = np.array([[0, 1], [2, 255]], np.uint8)
PRED = np.array([[0, 2], [255, 1]], np.uint8)


def test_colourise_and_blend():
    c = colourise(GT, PAL)
    assert c[0, 0].tolist() == [255, 0, 0] and c[1, 1].tolist() == [0, 0, 0]  # ignore -> black
    img = np.full((2, 2, 3), 100, np.uint8)
    assert blend(img, c)[0, 0].tolist() == [178, 50, 50]  # 0.5 * 100 + 0.5 * 255 = 177.5 -> 178


def test_error_codes_predicted_ignore_is_wrong():
    # (0,0) correct; (0,1) wrong; (1,0) predicted ignore on a labelled pixel -> wrong; (1,1) GT ignore
    assert error_codes(GT, PRED).tolist() == [[0, 1], [1, 2]]


def test_side_by_side_layout():
    arr = side_by_side(None, GT, PRED, PAL, with_errors=True, separator=3)
    assert arr.shape == (2, 2 * 3 + 3 * 2, 3)
    assert arr[:, 2:5].max() == 0  # black separator
    assert arr[0, 10].tolist() == ERROR_COLOURS[0].tolist()


def test_confidence_map():
    probs = np.zeros((3, 1, 3), np.float16)
    probs[:, 0, 0] = [0.6, 0.3, 0.1]
    probs[:, 0, 1] = [0.5, 0.5, 0.0]  # tie -> margin 0
    # pixel 2 has no mass (predicted ignore) -> confidence 0
    np.testing.assert_allclose(confidence_map(probs, "max")[0], [0.6, 0.5, 0], atol=1e-3)
    np.testing.assert_allclose(confidence_map(probs, "margin")[0], [0.3, 0, 0], atol=1e-3)
    ent = confidence_map(probs, "entropy")[0]
    assert 0 < ent[0] < 1 and ent[2] == 0
    with pytest.raises(ValueError):
        confidence_map(probs, "bogus")


def test_figures_with_legend():
    import matplotlib.pyplot as plt

    handles = legend_handles([0, 2], PAL, ["road", "car", "sky"])
    assert [h.get_label() for h in handles] == ["0 road", "2 sky"]
    fig = plot_overlays(np.zeros((2, 2, 3), np.uint8), GT, PRED, PAL, ["a", "b", "c"], title="t")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["0 a", "1 b", "2 c"]
    plt.close(fig)
    plt.close(plot_confidence(None, np.ones((2, 2, 2), np.float32)))


def test_failure_gallery_picks_worst_frames():
    import matplotlib.pyplot as plt

    df = pd.DataFrame(
        {
            "run": ["r"] * 3,
            "frame": ["a", "b", "c"],
            "evaluated": [True, True, False],
            "class_id": [1, 1, 1],
            "class_name": ["x"] * 3,
            "iou": [0.9, 0.1, 0.0],
            "gt_pixels": [5] * 3,
        }
    )
    loaded = []

    def load(run, frame):
        loaded.append(frame)
        return None, GT, PRED

    fig = failure_gallery(df, load, PAL, per_class=1)
    # frame c is not evaluated (annotated), so the worst evaluated frame is b
    assert "r/b" in fig.axes[0].get_title() and "0.10" in fig.axes[0].get_title()
    plt.close(fig)
