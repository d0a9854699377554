"""write_video: MP4 through PyAV (even sizes, decodable, frame count), GIF through Pillow, atomic writes."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from dino_lib.viz.video import as_rgb_uint8, even_pad, write_video


def _frames(n=5, h=33, w=47):
    return [np.full((h, w, 3), 40 * i, np.uint8) for i in range(n)]


def test_mp4_odd_size_is_padded_and_decodes(tmp_path):
    path = write_video(iter(_frames()), tmp_path / "v.mp4", fps=7.5)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 5
    assert decoded[0].shape == (34, 48, 3)  # padded to even sizes for H.264 4:2:0
    assert abs(decoded[3].astype(float).mean() - 120) < 3  # content survives lossy coding
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_gif(tmp_path):
    path = write_video(_frames(3), tmp_path / "v.gif", fps=5)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (47, 33)
        assert im.info["duration"] == 200


def test_float_and_grey_frames():
    assert as_rgb_uint8(np.ones((2, 3))).tolist() == np.full((2, 3, 3), 255).tolist()
    assert even_pad(np.zeros((3, 5, 3), np.uint8)).shape == (4, 6, 3)


def test_bad_inputs_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "e.mp4")
    frames = _frames(2) + [np.zeros((10, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 2 is 10x10"):
        write_video(frames, tmp_path / "m.mp4")
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(_frames(1), tmp_path / "x.avi2")
    assert not list(tmp_path.iterdir())
