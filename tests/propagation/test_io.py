"""Bad input for reading runs fails early and clearly; natural sort; opt-in policies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from dino_lib.propagation import PropagationConfig, PropagationInputError, propagate
from dino_lib.propagation.io import driving_runs, natural_key, read_label

from .oracle import OracleExtractor, write_driving_run

CELL = 8


def _run(root, out, **kw):
    cfg = dict(
        data_path=str(root),
        output_dir=str(out),
        arch="oracle",
        patch_size=None,
        n_last_frames=1,
        size_mask_neighborhood=2,
        topk=3,
        feature_cache=False,
        refresh_label_interval=2,
    )
    cfg.update(kw)
    return propagate(PropagationConfig(**cfg), extractor=OracleExtractor(CELL))


@pytest.fixture()
def root(tmp_path):
    return write_driving_run(tmp_path / "data", n_frames=4)


def test_natural_sort_of_frame_names(tmp_path):
    names = ["frame10", "frame2", "frame1"]
    assert sorted(names, key=natural_key) == ["frame1", "frame2", "frame10"]
    run = tmp_path / "r" / "run"
    (run / "image").mkdir(parents=True)
    for n in names:
        Image.new("RGB", (8, 8)).save(run / "image" / f"{n}.jpg")
    assert [p.stem for p in driving_runs(tmp_path / "r")[0].frames] == ["frame1", "frame2", "frame10"]


def test_duplicate_frame_names_are_an_error(root):
    shutil.copy(root / "run1" / "image" / "00001.png", root / "run1" / "image" / "00001.jpg")
    with pytest.raises(PropagationInputError, match="duplicate frame names 00001"):
        driving_runs(root)


def test_zero_padding_duplicates_are_an_error(root):
    shutil.copy(root / "run1" / "image" / "00001.png", root / "run1" / "image" / "1.png")
    with pytest.raises(PropagationInputError, match="duplicate"):
        driving_runs(root)


def test_empty_run_and_empty_root_are_errors(tmp_path):
    (tmp_path / "data" / "run1" / "image").mkdir(parents=True)
    with pytest.raises(PropagationInputError, match="no frames"):
        driving_runs(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PropagationInputError, match="no runs found"):
        driving_runs(tmp_path / "empty")
    with pytest.raises(PropagationInputError, match="does not exist"):
        driving_runs(tmp_path / "missing")


def test_single_run_folder_is_accepted(root):
    (run,) = driving_runs(root / "run1")
    assert run.name == "run1" and len(run.frames) == 4


def test_label_without_frame_is_an_error(root):
    shutil.copy(root / "run1" / "segmentation" / "00001.png", root / "run1" / "segmentation" / "00099.png")
    with pytest.raises(PropagationInputError, match="00099.png"):
        driving_runs(root)


def test_missing_keyframe_label_names_the_path(root, tmp_path):
    (root / "run1" / "segmentation" / "00002.png").unlink()
    with pytest.raises(PropagationInputError, match=r"segmentation/00002\.png"):
        _run(root, tmp_path / "out")
    assert not (tmp_path / "out" / "run1" / "00001.png").exists()  # failed before any work
    _run(root, tmp_path / "out2", keyframe_policy="first")  # only frame 0 is needed then


def test_label_size_mismatch_error_and_opt_in_resize(root, tmp_path):
    lab = Image.open(root / "run1" / "segmentation" / "00000.png")
    lab.resize((lab.width * 2, lab.height * 2), Image.NEAREST).save(root / "run1" / "segmentation" / "00000.png")
    with pytest.raises(PropagationInputError, match="label_size_mismatch"):
        _run(root, tmp_path / "out")
    (result,) = _run(root, tmp_path / "out2", label_size_mismatch="resize")
    assert result.written == 4


def test_frame_size_mismatch(root, tmp_path):
    img = Image.open(root / "run1" / "image" / "00003.png")
    img.resize((img.width + 8, img.height)).save(root / "run1" / "image" / "00003.png")
    with pytest.raises(PropagationInputError, match="00003.png.*frame_size_mismatch"):
        _run(root, tmp_path / "out")


def test_unknown_class_ids_error_or_remap(root, tmp_path):
    lab = np.asarray(Image.open(root / "run1" / "segmentation" / "00000.png")).copy()
    lab[:CELL, :CELL] = 40
    Image.fromarray(lab).save(root / "run1" / "segmentation" / "00000.png")
    with pytest.raises(PropagationInputError, match=r"00000\.png: unknown class ids \[40\]"):
        _run(root, tmp_path / "out")
    _run(root, tmp_path / "out2", unknown_ids="ignore")
    assert 40 not in np.unique(np.asarray(Image.open(tmp_path / "out2" / "run1" / "00000.png")))


def test_rgb_label_is_an_error_unless_decoded_with_the_palette(root, tmp_path):
    from dino_lib.data.palettes import DRIVING_PALETTE

    path = root / "run1" / "segmentation" / "00000.png"
    ids = np.asarray(Image.open(path)).copy()
    ids[ids == 255] = 0
    ids[ids == 3] = 2  # classes 3 and 4 share a colour: keep the decodable ones
    Image.fromarray(ids).save(path)
    Image.fromarray(DRIVING_PALETTE[ids]).save(path)
    with pytest.raises(PropagationInputError, match="rgb_labels: palette"):
        _run(root, tmp_path / "out")
    np.testing.assert_array_equal(read_label(path, DRIVING_PALETTE), ids)
    _run(root, tmp_path / "out2", rgb_labels="palette")


def test_sixteen_bit_labels_with_large_ids_are_rejected(root, tmp_path):
    path = root / "run1" / "segmentation" / "00000.png"
    ids = np.asarray(Image.open(path)).astype(np.uint16)
    ids[0, 0] = 1000
    Image.fromarray(ids).save(path)
    with pytest.raises(PropagationInputError, match="1000"):
        _run(root, tmp_path / "out")


def test_gaps_in_frame_numbering_are_warned_about(root, caplog):
    (root / "run1" / "image" / "00002.png").rename(root / "run1" / "image" / "00007.png")
    (root / "run1" / "segmentation" / "00002.png").rename(root / "run1" / "segmentation" / "00007.png")
    with caplog.at_level("WARNING"):
        (run,) = driving_runs(root)
    assert [p.stem for p in run.frames] == ["00000", "00001", "00003", "00007"]
    assert "gap" in caplog.text and "between 1 and 3" in caplog.text
