"""End-to-end propagation on oracle videos: exactness, keyframe policies, outputs, manifest, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dino_lib.propagation import PropagationConfig, PropagationInputError, propagate
from dino_lib.propagation import outputs as outputs_mod

from .oracle import OracleExtractor, expected_label, write_driving_run

CELL = 8


def _cfg(root, out, **kw) -> PropagationConfig:
    base = dict(
        data_path=str(root),
        output_dir=str(out),
        arch="oracle",
        patch_size=None,
        n_last_frames=2,
        size_mask_neighborhood=2,
        topk=3,
        feature_cache=False,
    )
    base.update(kw)
    return PropagationConfig(**base)


def _check_exact(root, out, n_frames, anchor_of, shift=1):
    """Every cell seen in the anchor frame gets its label back (checked at cell centres: bilinear up-sampling of the
    soft maps may legitimately round corners between cells of different classes)."""
    centre = np.s_[CELL // 2 :: CELL, CELL // 2 :: CELL]
    for t in range(n_frames):
        pred = np.asarray(Image.open(out / "run1" / f"{t:05d}.png"))[centre]
        gt = expected_label(root, "run1", t)[centre]
        visible = slice(shift * (t - anchor_of(t)), None)  # new content enters from the left
        np.testing.assert_array_equal(pred[:, visible], gt[:, visible], err_msg=f"frame {t}")


def test_oracle_video_is_propagated_exactly_first_frame_policy(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=6)
    out = tmp_path / "out"
    (result,) = propagate(_cfg(root, out, keyframe_policy="first"), extractor=OracleExtractor(CELL))
    assert result.written == 6 and result.label_frames == ["00000"]
    _check_exact(root, out, 6, anchor_of=lambda t: 0)
    img = Image.open(out / "run1" / "00003.png")
    assert img.mode == "P" and img.size == (7 * CELL, 5 * CELL)


def test_chunk_policy_reanchors_and_manifest_lists_keyframes(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=7)
    out = tmp_path / "out"
    propagate(_cfg(root, out, refresh_label_interval=3, save_probs=True), extractor=OracleExtractor(CELL))
    _check_exact(root, out, 7, anchor_of=lambda t: t - t % 3)
    manifest = json.loads((out / "run1" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["keyframe_policy"] == "chunks"
    assert manifest["label_frames"] == ["00000", "00003", "00006"]
    assert manifest["source_frames"]["00005"] == "00003"
    assert manifest["prob_classes"] == list(range(27))
    assert manifest["backbone"]["weights_hash"] == "oracle" and "frames_per_s" in manifest["timings"]
    probs = np.load(out / "run1" / "probs" / "00004.npy")
    assert probs.dtype == np.float16 and probs.shape == (27, 5 * CELL, 7 * CELL)
    pred = np.asarray(Image.open(out / "run1" / "00004.png"))
    valid = pred != 255
    np.testing.assert_array_equal(probs.astype(np.float32).argmax(0)[valid], pred[valid])


def test_continuous_policy_adds_anchors_and_new_classes(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=6)
    lab = expected_label(root, "run1", 4).copy()
    lab[-CELL:, -2 * CELL : -CELL] = 9  # a class that only the second keyframe knows
    Image.fromarray(lab).save(root / "run1" / "segmentation" / "00004.png")
    out = tmp_path / "out"
    propagate(_cfg(root, out, keyframe_policy="continuous", refresh_label_interval=4), extractor=OracleExtractor(CELL))
    pred5 = np.asarray(Image.open(out / "run1" / "00005.png"))
    assert pred5[-CELL // 2, -CELL // 2] == 9  # the labelled cell moved right by one cell
    assert manifest_frames(out) == ["00000", "00004"]


def manifest_frames(out):
    return json.loads((out / "run1" / "manifest.json").read_text())["label_frames"]


def test_ignore_zero_mass_is_never_predicted_from_labelled_cells(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=3)
    out = tmp_path / "out"
    propagate(_cfg(root, out, keyframe_policy="first"), extractor=OracleExtractor(CELL))
    centre = np.s_[CELL // 2 :: CELL, CELL // 2 :: CELL]
    gt = expected_label(root, "run1", 2)[centre]
    pred = np.asarray(Image.open(out / "run1" / "00002.png"))[centre]
    visible = np.s_[:, 2:]
    assert ((pred[visible] == 255) == (gt[visible] == 255)).all()


def test_resume_skips_finished_work_and_restores_the_context(tmp_path, monkeypatch):
    root = write_driving_run(tmp_path / "data", n_frames=14, w_cells=20, shift=1)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    cfg = _cfg(root, out, keyframe_policy="first")
    propagate(_cfg(root, ref_out, keyframe_policy="first"), extractor=OracleExtractor(CELL))

    real_write = outputs_mod.write_index_png
    calls = {"n": 0}

    def failing_write(path, ids, palette):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt("simulated kill")
        real_write(path, ids, palette)

    monkeypatch.setattr(outputs_mod, "write_index_png", failing_write)
    with pytest.raises(KeyboardInterrupt):
        propagate(cfg, extractor=OracleExtractor(CELL))
    monkeypatch.setattr(outputs_mod, "write_index_png", real_write)
    assert (out / "run1" / ".resume_state.pt").is_file()
    (result,) = propagate(cfg, extractor=OracleExtractor(CELL))
    assert result.written == 4  # resumed at frame 10
    for t in range(14):
        a = np.asarray(Image.open(out / "run1" / f"{t:05d}.png"))
        b = np.asarray(Image.open(ref_out / "run1" / f"{t:05d}.png"))
        np.testing.assert_array_equal(a, b)
    (again,) = propagate(cfg, extractor=OracleExtractor(CELL))
    assert again.written == 0 and again.skipped == 14
    with pytest.raises(PropagationInputError, match="overwrite"):
        propagate(_cfg(root, out, keyframe_policy="first", topk=4), extractor=OracleExtractor(CELL))
    (redo,) = propagate(
        _cfg(root, out, keyframe_policy="first", topk=4, overwrite=True), extractor=OracleExtractor(CELL)
    )
    assert redo.written == 14


def test_feature_cache_is_reused(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=4)
    cache = tmp_path / "cache"
    cfg = _cfg(root, tmp_path / "a", feature_cache=True, feature_cache_dir=str(cache))
    (first,) = propagate(cfg, extractor=OracleExtractor(CELL))
    (second,) = propagate(
        _cfg(root, tmp_path / "b", feature_cache=True, feature_cache_dir=str(cache), topk=2),
        extractor=OracleExtractor(CELL),
    )
    assert first.timings["frames_extracted"] == 4 and second.timings["frames_extracted"] == 0
    assert second.timings["cache_hits"] == 4
    assert len(list(cache.rglob("*.npy"))) == 4


def test_config_of_predictions_reads_back_the_settings_of_a_folder(tmp_path):
    root = write_driving_run(tmp_path / "data", n_frames=4)
    out = tmp_path / "out"
    cfg = _cfg(root, out, refresh_label_interval=2, topk=2)
    propagate(cfg, extractor=OracleExtractor(CELL))
    again = outputs_mod.config_of_predictions(out)
    assert again == cfg  # every key, e.g. the interval and top-k that differ from the defaults
    # a folder without a (readable) manifest has no known settings
    assert outputs_mod.config_of_predictions(tmp_path / "data") is None
    (out / "run1" / "manifest.json").write_text("{ truncated")
    assert outputs_mod.config_of_predictions(out) is None
