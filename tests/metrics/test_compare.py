"""Headline scores of several prediction folders side by side (the demo's trained-vs-random comparison)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from dino_lib.metrics.compare import compare_predictions
from dino_lib.metrics.config import MetricsConfig
from dino_lib.metrics.pipeline import evaluate, prepare

REPO = Path(__file__).resolve().parents[2]
corrupt_predictions = runpy.run_path(str(REPO / "tools" / "demo" / "standin.py"))["corrupt_predictions"]


def test_semantic_rows_match_the_full_report_and_rank_the_better_folder_first(sample_paths, tmp_path):
    # Labels every 4 frames drift less than labels every 16 frames: the first folder must score higher.
    close = corrupt_predictions("sample:driving", tmp_path / "close", label_every=4)
    far = corrupt_predictions("sample:driving", tmp_path / "far", label_every=16)
    cfg = MetricsConfig(output_dir=str(tmp_path / "m"))
    scores = compare_predictions(cfg, {"close": close, "far": far})
    assert list(scores.index) == ["close", "far"]
    assert scores.loc["close", "miou_present"] > scores.loc["far", "miou_present"]
    assert scores.loc["close", "pixel_acc"] > scores.loc["far", "pixel_acc"]

    one = MetricsConfig(output_dir=str(tmp_path / "m"), predictions=str(far))
    report = evaluate(one, prepare(one)).report
    assert scores.loc["far", "miou_present"] == pytest.approx(report.summary["miou_present"].iloc[-1])
    assert scores.loc["far", "miou_fork"] == pytest.approx(report.fork["miou_fork"].iloc[-1])
    # The fork number averages over all 27 classes, absent ones scoring 0: it cannot pass present / 27.
    present = int(report.summary["classes_present"].iloc[-1])
    assert scores.loc["far", "miou_fork_ceiling"] == pytest.approx(present / 27)
    assert (scores["miou_fork"] <= scores["miou_fork_ceiling"] + 1e-9).all()
    assert not (tmp_path / "m").exists()  # nothing written


def test_davis_rows_hold_j_and_f(sample_paths, tmp_path):
    pred = corrupt_predictions("sample:davis", tmp_path / "pred", mode="davis")
    cfg = MetricsConfig(output_dir=str(tmp_path / "m"), mode="davis", ground_truth="sample:davis")
    scores = compare_predictions(cfg, {"stand-in": pred})
    row = scores.loc["stand-in"]
    assert row["J&F"] == pytest.approx((row["J"] + row["F"]) / 2)
    assert 0.0 < row["J"] < 1.0


def test_no_folder_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        compare_predictions(MetricsConfig(output_dir="unused"), {})
