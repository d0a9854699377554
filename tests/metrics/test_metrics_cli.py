"""The metrics step end to end: ``python -m dino_lib.metrics`` on the sample data with stand-in predictions."""

from __future__ import annotations

import pandas as pd
import pytest

from dino_lib.config import ConfigError, load_config
from dino_lib.metrics.__main__ import main
from dino_lib.metrics.config import MetricsConfig


def test_cli_semantic_with_corrupted_standin(tmp_path, sample_paths, capsys):
    out = tmp_path / "m"
    assert main([f"output_dir={out}", "standin=corrupt", "video=mp4", "overlays=2"]) == 0
    text = capsys.readouterr().out
    assert "DEMO STAND-IN" in text and "miou_fork" in text
    summary = pd.read_csv(out / "summary.csv")
    assert summary["run"].tolist() == ["pagoda-pan", "pooled"]
    # the stand-in keeps annotated frames (every 8th) exact and corrupts the others, so scores are in (0, 1)
    assert 0 < summary["miou_present"].iloc[0] < 1
    fork = pd.read_csv(out / "fork_compatible.csv")
    assert fork["frames_scored"].iloc[0] == 16 and "fork-compatible" in fork["definition"].iloc[0]
    curve = pd.read_csv(out / "iou_vs_distance.csv")
    pooled = curve[curve["run"] == "pooled"].set_index("distance")["miou_present"]
    assert 0 not in pooled.index and pooled.loc[1] > pooled.loc[7]  # drift grows with distance from the label
    for name in ("per_class", "per_frame", "frame_class_iou", "iou_vs_distance_per_class"):
        assert (out / f"{name}.csv").is_file()
    assert (out / "figures" / "failure_gallery.png").is_file()
    assert len(list((out / "figures").glob("overlay_*.png"))) == 2
    assert len(list((out / "figures").glob("confidence_*.png"))) == 2
    assert (out / "video_pagoda-pan.mp4").stat().st_size > 0
    assert (out / "config.yaml").is_file()


def test_cli_davis_mode(tmp_path, sample_paths, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                f"output_dir={out}",
                "mode=davis",
                "ground_truth=sample:davis",
                "standin=corrupt",
                "video=null",
                "overlays=1",
            ]
        )
        == 0
    )
    g = pd.read_csv(out / "global_results.csv")
    assert list(g.columns) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert 0 < g["J&F-Mean"].iloc[0] < 1
    assert g["J&F-Mean"].iloc[0] == pytest.approx((g["J-Mean"].iloc[0] + g["F-Mean"].iloc[0]) / 2)
    assert (out / "per-sequence_results.csv").is_file()


@pytest.mark.slow
def test_cli_with_propagation_standin(tmp_path, sample_paths):
    out = tmp_path / "p"
    assert main([f"output_dir={out}", "video=gif", "overlays=1", "gallery_per_class=1"]) == 0
    assert (out / "standin_predictions" / "pagoda-pan" / "manifest.json").is_file()
    assert pd.read_csv(out / "summary.csv")["frames_evaluated"].iloc[0] == 14  # 16 frames, keyframes 0 and 8


def test_ci_params_load_and_validate(repo_root):
    cfg = load_config(MetricsConfig, repo_root / "params" / "segmentation_metrics" / "ci.yaml")
    assert cfg.predictions is None and cfg.mode == "semantic"
    load_config(MetricsConfig, repo_root / "params" / "segmentation_metrics" / "full.yaml")
    with pytest.raises(ConfigError, match="either label_frames or label_every"):
        load_config(MetricsConfig, None, ["label_frames=[0]", "label_every=5"])
    with pytest.raises(ConfigError, match="did you mean 'num_classes'"):
        load_config(MetricsConfig, None, ["num_class=3"])
