"""Attention videos: frame count, size, fps, threshold applied, errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from dino_lib.attention import video_attention, video_fps, video_frames
from dino_lib.models import DinoVisionTransformer
from dino_lib.viz.attention_run import write_attention_video
from dino_lib.viz.video import write_video


def attention_video(model, source, output, *, normalization="clip", render="overlay", **kw):
    """Both passes: the maps (attention) then the drawn, encoded frames (viz)."""
    maps = video_attention(model, source, **kw)
    return write_attention_video(maps, output, normalization=normalization, render=render)


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture()
def frame_folder(tmp_path: Path) -> Path:
    """A short clip of a real photo panning right (first frame png, others jpg: mixed extensions are read)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    photo = data.coffee()[::4, ::4]  # (100, 150, 3)
    for i in range(6):
        frame = np.roll(photo, 6 * i, axis=1)[:, :96]  # (100, 96, 3)
        Image.fromarray(frame).save(folder / f"frame-{i:04d}.{'png' if i == 0 else 'jpg'}")
    return folder


@pytest.fixture()
def model() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=16, embed_dim=32, depth=2, num_heads=2).eval()


def test_folder_to_mp4(tmp_path, frame_folder, model):
    result = attention_video(model, frame_folder, tmp_path / "out.mp4", patch_size=16, fps=5, batch_size=4)
    frames = _decode(result.path)
    assert result.frames == len(frames) == 6
    assert frames[0].shape[:2] == (100, 96) == result.size_hw
    assert video_fps(result.path) == pytest.approx(5.0)


def test_threshold_changes_the_output(tmp_path, frame_folder, model):
    plain = attention_video(model, frame_folder, tmp_path / "plain.mp4", patch_size=16, fps=5)
    masked = attention_video(model, frame_folder, tmp_path / "masked.mp4", patch_size=16, fps=5, threshold=0.6)
    a, b = _decode(plain.path), _decode(masked.path)
    assert len(a) == len(b)
    assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() > 1.0


def test_video_file_input_keeps_source_fps_and_resizes(tmp_path, frame_folder, model):
    source = write_video(video_frames(frame_folder), tmp_path / "source.mp4", fps=12.0)
    out = attention_video(model, source, tmp_path / "att.mp4", patch_size=16, image_size=64, max_frames=4)
    assert out.fps == pytest.approx(12.0) and out.frames == 4
    frames = _decode(out.path)
    assert len(frames) == 4 and min(frames[0].shape[:2]) == 64


def test_gif_output_and_frame_normalization(tmp_path, frame_folder, model):
    out = attention_video(model, frame_folder, tmp_path / "att.gif", patch_size=16, normalization="frame", render="map")
    with Image.open(out.path) as gif:
        assert gif.n_frames == 6


def test_empty_and_missing_inputs(tmp_path, model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no frames"):
        attention_video(model, tmp_path / "empty", tmp_path / "x.mp4", patch_size=16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        attention_video(model, tmp_path / "nope.mp4", tmp_path / "x.mp4", patch_size=16)


def test_maps_keep_no_frames_and_masks_follow_the_threshold(frame_folder, model):
    plain = video_attention(model, frame_folder, patch_size=16, fps=5)
    masked = video_attention(model, frame_folder, patch_size=16, threshold=0.6)
    assert plain.frames == 6 and plain.maps.shape == (6, 7, 6) and plain.masks is None  # (N, h, w): 112x96 padded
    assert masked.masks is not None and masked.masks.shape == masked.maps.shape and masked.masks.dtype == torch.bool
    assert plain.fps == 5.0 and masked.fps == 30.0  # a frame folder has no fps: the reference default


def test_unknown_output_suffix_is_an_error(tmp_path, frame_folder, model):
    maps = video_attention(model, frame_folder, patch_size=16, max_frames=1)
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        write_attention_video(maps, tmp_path / "x.avi")
