"""Evaluation of prediction folders: fork number vs default on a folder fixture, and bad inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dino_lib.metrics import MetricsInputError, SemanticOptions, evaluate_davis, evaluate_semantic, semantic_report

GT1 = np.array([[0, 0, 1, 1], [0, 2, 1, 255]], dtype=np.uint8)
PRED1 = np.array([[0, 1, 1, 1], [0, 0, 255, 2]], dtype=np.uint8)
GT0 = np.full((2, 4), 3, dtype=np.uint8)  # the annotated frame: all class 3


def _png(path: Path, arr: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


def _run(tmp_path: Path, *, manifest: bool = True, pred0: bool = False) -> tuple[Path, Path]:
    """DATAROOT/run/segmentation/{000,001}.png and PRED/run/001.png (+ manifest naming 000 as the label frame)."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    _png(data / "run" / "segmentation" / "000.png", GT0)
    _png(data / "run" / "segmentation" / "001.png", GT1)
    _png(pred / "run" / "001.png", PRED1)
    if pred0:
        _png(pred / "run" / "000.png", GT0)
    if manifest:
        (pred / "run" / "manifest.json").write_text(json.dumps({"label_frames": ["000"]}))
    return data, pred


def test_fork_number_differs_from_default(tmp_path):
    data, pred = _run(tmp_path)
    rep = semantic_report(evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4)))
    row = rep.summary.set_index("run").loc["run"]
    # default: frame 000 (annotated) excluded; frame 001 as in test_semantic_metrics: 1/3, class 3 absent (NaN)
    assert row["frames_evaluated"] == 1
    assert row["miou_present"] == pytest.approx(1 / 3)
    assert row["pixel_acc"] == pytest.approx(4 / 7)
    # fork: both frames, the missing annotated-frame prediction is the label copy (8 px of class 3 -> IoU 1),
    # predicted-255 pixel dropped (class 1 -> 2/3), 4-class mean with absent = 0:
    # (1/2 + 2/3 + 0 + 1) / 4 = 13/24
    fork = rep.fork.set_index("run").loc["run"]
    assert fork["miou_fork"] == pytest.approx(13 / 24)
    assert fork["frames_scored"] == 2 and fork["label_frames_copied_from_gt"] == 1
    assert "absent classes scoring 0" in fork["definition"]
    # including the annotated frame in the default scores: class 3 present (IoU 1) -> (1/2 + 1/2 + 0 + 1) / 4
    rep2 = semantic_report(
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, include_label_frames=True))
    )
    assert rep2.summary["miou_present"].iloc[0] == pytest.approx(0.5)
    per_class = rep.per_class[rep.per_class["run"] == "run"].set_index("class_id")["iou"]
    assert per_class[0] == pytest.approx(0.5) and np.isnan(per_class[3])


def test_curve_and_pooled_rows(tmp_path):
    data, pred = _run(tmp_path)
    rep = semantic_report(evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4)))
    assert list(rep.summary["run"]) == ["run", "pooled"]
    curve = rep.curve[rep.curve["run"] == "pooled"]
    assert curve["distance"].tolist() == [1] and curve["miou_present"].iloc[0] == pytest.approx(1 / 3)
    saved = rep.save(tmp_path / "out")
    assert all(p.is_file() for p in saved.values())


def test_label_frames_unknown_is_an_error_with_fix(tmp_path):
    data, pred = _run(tmp_path, manifest=False, pred0=True)
    with pytest.raises(MetricsInputError, match="label_frames=\\[0\\]"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4))
    res = evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, label_frames=[0]))
    assert res[0].is_label.tolist() == [True, False]


def test_missing_prediction_frame(tmp_path, caplog):
    data, pred = _run(tmp_path)
    _png(data / "run" / "segmentation" / "002.png", GT1)
    with pytest.raises(MetricsInputError, match=r"(?s)missing predictions: 1 \(first: \['002'\]\).*missing=intersect"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4))
    with caplog.at_level(logging.WARNING):
        res = evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, missing="intersect"))
    assert res[0].stems == ["000", "001"]
    assert "missing predictions: 1" in caplog.text


def test_size_mismatch_names_both_files(tmp_path):
    data, pred = _run(tmp_path)
    _png(pred / "run" / "001.png", np.zeros((4, 8), np.uint8))
    with pytest.raises(MetricsInputError, match=r"(?s)001.png is 8x4 .* label .*001.png is 4x2.*resize_mismatched"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4))
    res = evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, resize_mismatched=True))
    assert res[0].frame_cms.shape == (2, 4, 5)


def test_unknown_class_ids(tmp_path):
    data, pred = _run(tmp_path)
    bad = GT1.copy()
    bad[0, 0] = 40
    _png(data / "run" / "segmentation" / "001.png", bad)
    with pytest.raises(MetricsInputError, match=r"001.png contains ids \[40\].*unknown_ids=ignore"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4))
    res = evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, unknown_ids="ignore"))
    assert res[0].frame_cms[1].sum() == 6  # the remapped pixel is no longer scored


def test_rgb_label_is_an_error_suggesting_a_decoder(tmp_path):
    data, pred = _run(tmp_path)
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[..., 0] = 128
    _png(data / "run" / "segmentation" / "001.png", rgb, mode="RGB")
    with pytest.raises(MetricsInputError, match="colour.*index PNG.*colour-table decoder"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4))


def test_strict_predicted_ignore(tmp_path):
    data, pred = _run(tmp_path)
    with pytest.raises(MetricsInputError, match="ignore id 255.*pred_ignore=wrong"):
        evaluate_semantic(pred, data, opts=SemanticOptions(num_classes=4, pred_ignore="error"))


def test_no_runs_and_no_predictions(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetricsInputError, match="no runs found"):
        evaluate_semantic(tmp_path / "empty", tmp_path / "empty")
    data, _ = _run(tmp_path)
    with pytest.raises(MetricsInputError, match="no predictions found"):
        evaluate_semantic(tmp_path / "empty", data)


def _davis(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    root, res = tmp_path / "DAVIS", tmp_path / "results"
    for t in range(n):
        gt = np.zeros((10, 10), np.uint8)
        gt[2:5, 2 + t % 2 : 5 + t % 2] = 1
        _png(root / "Annotations" / "480p" / "vid" / f"{t:05d}.png", gt, mode="L")
        _png(res / "vid" / f"{t:05d}.png", gt if t != 2 else np.zeros_like(gt))
    return root, res


def test_davis_folder_evaluation(tmp_path):
    from dino_lib.metrics import davis_report

    root, res = _davis(tmp_path)
    rep = davis_report(evaluate_davis(res, root))
    # frames 1 and 2 are evaluated: frame 1 perfect (J = F = 1), frame 2 empty prediction (J = F = 0)
    g = rep.global_.iloc[0]
    assert g["J-Mean"] == pytest.approx(0.5) and g["F-Mean"] == pytest.approx(0.5)
    assert g["J&F-Mean"] == pytest.approx(0.5)
    assert rep.per_object["Sequence"].tolist() == ["vid_1"]
    (res / "vid" / "00001.png").unlink()
    with pytest.raises(MetricsInputError, match="missing predictions: 1"):
        evaluate_davis(res, root)


def test_manifest_with_positions_and_sources(tmp_path):
    from dino_lib.metrics.io import read_manifest

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(
        json.dumps({"label_frames": [0, 2], "source_frames": [0, 0, 2, 2], "prob_classes": [3, 5]})
    )
    m = read_manifest(run, ["a", "b", "c", "d"])
    assert m.label_frames == ["a", "c"]
    assert m.source_frames == {"a": "a", "b": "a", "c": "c", "d": "c"}
    assert m.prob_classes == [3, 5]
    (run / "manifest.json").write_text("{broken")
    with pytest.raises(MetricsInputError, match="not valid JSON"):
        read_manifest(run)
    (run / "manifest.json").write_text(json.dumps({"label_frames": [7]}))
    with pytest.raises(MetricsInputError, match="frame index 7 outside the 4 frames"):
        read_manifest(run, ["a", "b", "c", "d"])


def test_probs_channel_count_must_match_manifest(tmp_path):
    from dino_lib.metrics.io import read_probs

    (tmp_path / "probs").mkdir()
    np.save(tmp_path / "probs" / "f.npy", np.ones((2, 3, 4), np.float16))
    assert read_probs(tmp_path, "f", [0, 1]).shape == (2, 3, 4)
    assert read_probs(tmp_path, "missing") is None
    with pytest.raises(MetricsInputError, match="2 channels but the manifest lists 3"):
        read_probs(tmp_path, "f", [0, 1, 2])
