"""``python -m dino_lib.metrics`` on bad inputs, and NaN probabilities: clear messages, exit 2, nothing left."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from dino_lib.metrics.io import read_probs
from dino_lib.viz.segmentation import confidence_map, plot_confidence

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "params" / "segmentation_metrics" / "ci.yaml"

CASES = {
    "missing predictions": (["predictions=/no/such/preds"], ["predictions: /no/such/preds does not exist"]),
    "missing ground truth": (["ground_truth=/no/gt"], ["ground_truth: /no/gt does not exist"]),
    "unknown mode": (["mode=iou"], ["command line: mode: expected one of"]),
    "zero fps": (["--fps", "0"], ["fps: must be > 0"]),
    "unknown video format": (["video=avi"], ["video"]),
    "no predictions": ([], ["predictions: no prediction folder given", "python -m dino_lib.propagation"]),
    "removed stand-in key": (["standin=corrupt"], ["'standin'", "tools/demo/standin.py"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    extra, fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("metrics", "--config", CI, f"output_dir={out}", *extra)
    clean_failure(code, err, *fragments, out=out)


def test_empty_prediction_folder(tmp_path, twin, clean_failure, sample_paths):
    preds = tmp_path / "preds"
    preds.mkdir()
    out = tmp_path / "out"
    code, err = twin("metrics", "--config", CI, f"predictions={preds}", f"output_dir={out}")
    clean_failure(code, err, "preds", out=out)


def test_nan_probabilities_are_warned_with_file_and_frame_and_drawn_grey(tmp_path, caplog):
    probs = np.full((3, 4, 5), 1 / 3, dtype=np.float16)
    probs[:, 0, 0] = np.nan
    (tmp_path / "probs").mkdir()
    np.save(tmp_path / "probs" / "00012.npy", probs)
    with caplog.at_level(logging.WARNING):
        arr = read_probs(tmp_path, "00012")
    assert "00012.npy" in caplog.text and "frame 00012" in caplog.text and "3 non-finite" in caplog.text
    conf = confidence_map(arr)
    assert np.isnan(conf[0, 0]) and np.allclose(conf[1:], 1 / 3, atol=1e-3)
    with pytest.warns(UserWarning, match="run / 00012: 1 pixels with NaN/Inf"):
        fig = plot_confidence(None, arr, title="run / 00012")
    image = fig.axes[0].get_images()[0]
    assert image.cmap.get_bad()[:3] == pytest.approx((0.6, 0.6, 0.6))  # grey, not black
