"""The driving-run and DAVIS layouts, found once for propagation and the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from dino_lib.data.video_sets import VideoSetError, davis_video_folders, driving_run_folders, natural_key


def _mkdirs(root: Path, *folders: str) -> None:
    for folder in folders:
        (root / folder).mkdir(parents=True)


def test_driving_runs_are_natural_sorted_and_a_run_folder_is_one_run(tmp_path):
    _mkdirs(tmp_path / "data", "run10/image", "run2/image", "run2/segmentation", "labels_only/segmentation")
    assert [f.name for f in driving_run_folders(tmp_path / "data")] == ["run2", "run10"]
    gt = driving_run_folders(tmp_path / "data", marker="segmentation")
    assert [f.name for f in gt] == ["labels_only", "run2"]
    assert gt[0].labels == tmp_path / "data" / "labels_only" / "segmentation"
    (single,) = driving_run_folders(tmp_path / "data" / "run2")
    assert single.images == tmp_path / "data" / "run2" / "image"
    assert sorted(["frame10", "frame2"], key=natural_key) == ["frame2", "frame10"]


def test_driving_layout_errors_name_the_folder_and_the_caller_class(tmp_path):
    class Mine(VideoSetError):
        pass

    with pytest.raises(Mine, match="does not exist"):
        driving_run_folders(tmp_path / "missing", error=Mine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoSetError, match=r"no runs found.*holding segmentation/\); try this"):
        driving_run_folders(tmp_path / "empty", marker="segmentation", hint="; try this")
    _mkdirs(tmp_path / "data", "a/image")
    with pytest.raises(VideoSetError, match=r"runs \['b'\] not found.*available: \['a'\]"):
        driving_run_folders(tmp_path / "data", runs=["b"])


def test_davis_videos_from_the_listing_or_the_folders(tmp_path):
    _mkdirs(tmp_path, "JPEGImages/480p/bear", "JPEGImages/480p/car10", "JPEGImages/480p/car2", "Annotations/480p/bear")
    assert [f.name for f in davis_video_folders(tmp_path)] == ["bear", "car2", "car10"]
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("car2\nbear\n")
    assert [f.name for f in davis_video_folders(tmp_path)] == ["car2", "bear"]
    with pytest.raises(VideoSetError, match=r"without a folder.*\['car2'\]"):
        davis_video_folders(tmp_path, required="Annotations")
    (bear,) = davis_video_folders(tmp_path, listing=None, required="Annotations")
    assert bear.images == tmp_path / "JPEGImages" / "480p" / "bear"
    with pytest.raises(VideoSetError, match="Full-Resolution not found"):
        davis_video_folders(tmp_path, resolution="Full-Resolution")
