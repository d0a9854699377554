"""The metrics step end to end: ``python -m dino_lib.metrics`` on the sample data, scoring predictions made by the
demo stand-in tool (tools/demo/standin.py, corrupted ground truth: fast and deterministic)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest

from dino_lib.config import ConfigError, load_config
from dino_lib.metrics.__main__ import main
from dino_lib.metrics.config import MetricsConfig

REPO = Path(__file__).resolve().parents[2]
corrupt_predictions = runpy.run_path(str(REPO / "tools" / "demo" / "standin.py"))["corrupt_predictions"]


@pytest.fixture(scope="module")
def driving_predictions(sample_paths, tmp_path_factory) -> Path:
    return corrupt_predictions("sample:driving", tmp_path_factory.mktemp("pred"), label_every=8)


def test_cli_semantic(tmp_path, driving_predictions, capsys):
    out = tmp_path / "m"
    assert main([f"predictions={driving_predictions}", f"output_dir={out}", "video=mp4", "overlays=2"]) == 0
    text = capsys.readouterr().out
    assert "miou_fork" in text and "STAND-IN" not in text
    summary = pd.read_csv(out / "summary.csv")
    assert summary["run"].tolist() == ["pagoda-pan", "pooled"]
    # corrupted ground truth: annotated frames (every 8th) exact, the others corrupted, so scores are in (0, 1)
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
    pred = corrupt_predictions("sample:davis", tmp_path / "pred", mode="davis")
    assert (
        main(
            [
                f"output_dir={out}",
                "mode=davis",
                "ground_truth=sample:davis",
                f"predictions={pred}",
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


def test_cli_without_predictions_stops_before_anything_is_written(tmp_path, sample_paths):
    out = tmp_path / "none"
    with pytest.raises(ConfigError, match="predictions: no prediction folder given") as err:
        main([f"output_dir={out}"])
    assert err.value.key == "predictions"
    assert "python -m dino_lib.propagation" in str(err.value) and "propagate_segmentation" in str(err.value)
    assert not out.exists()


def test_removed_standin_keys_say_where_stand_ins_went():
    for key in ("standin=corrupt", "standin_label_every=50", "seed=1", "device=cpu"):
        with pytest.raises(ConfigError, match="no longer a key.*tools/demo/standin.py") as err:
            load_config(MetricsConfig, None, [key])
        assert err.value.key == key.split("=")[0]


def test_ci_params_load_and_validate(repo_root):
    cfg = load_config(MetricsConfig, repo_root / "params" / "segmentation_metrics" / "ci.yaml")
    assert cfg.predictions is None and cfg.mode == "semantic"
    load_config(MetricsConfig, repo_root / "params" / "segmentation_metrics" / "full.yaml")
    with pytest.raises(ConfigError, match="either label_frames or label_every"):
        load_config(MetricsConfig, None, ["label_frames=[0]", "label_every=5"])
    with pytest.raises(ConfigError, match="did you mean 'num_classes'"):
        load_config(MetricsConfig, None, ["num_class=3"])
