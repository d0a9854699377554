"""``python -m dino_lib.propagation`` on bad inputs: one message naming the key or file, exit 2, nothing left."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "params" / "propagate_segmentation" / "ci.yaml"

CASES = {
    "missing data": (["data_path=/no/such/runs"], ["data_path: /no/such/runs does not exist"]),
    "zero topk": (["--topk", "0"], ["command line: topk: must be >= 1"]),
    "zero max_frames": (["max_frames=0"], ["max_frames: must be >= 1"]),
    "unknown dataset": (["dataset=kitti"], ["dataset"]),
    "unknown device": (["device=tpu"], ["device: expected auto, cpu, cuda or cuda:N"]),
    "missing weights": (["pretrained_weights=/no/w.pth"], ["pretrained_weights: /no/w.pth does not exist"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    extra, fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("propagation", "--config", CI, f"output_dir={out}", *extra)
    clean_failure(code, err, *fragments, out=out)


@pytest.fixture()
def davis_copy(tmp_path, sample_paths):
    from dino_lib.data.samples import resolve_data_path

    root = tmp_path / "davis"
    shutil.copytree(resolve_data_path("sample:davis"), root)
    return root


def _davis_argv(root: Path, out: Path) -> list:
    return ["--config", CI, "dataset=davis", f"data_path={root}", f"output_dir={out}", "max_frames=3"]


def test_stray_davis_object_id_is_an_error_not_a_channel(davis_copy, tmp_path, twin, clean_failure):
    first = sorted((davis_copy / "Annotations" / "480p" / "pagoda-pan").glob("*.png"))[0]
    with Image.open(first) as img:
        ids, palette = np.array(img), img.getpalette()
    assert ids.max() < 200
    ids[0, :3] = 200  # three stray pixels
    stray = Image.fromarray(ids, mode="P")
    stray.putpalette(palette)
    stray.save(first)
    out = tmp_path / "out"
    code, err = twin("propagation", *_davis_argv(davis_copy, out))
    clean_failure(code, err, first.name, "object ids [200]", "unknown_ids: ignore", out=out)
    code, _ = twin("propagation", *_davis_argv(davis_copy, out), "unknown_ids=ignore", "save_probs=true")
    assert code == 0
    probs = next((out / "pagoda-pan" / "probs").glob("*.npy"))
    assert np.load(probs).shape[0] == int(ids[ids != 200].max()) + 1  # no channel for id 200


def test_truncated_frame_is_named_before_any_work(davis_copy, tmp_path, twin, clean_failure):
    frame = sorted((davis_copy / "JPEGImages" / "480p" / "pagoda-pan").glob("*.jpg"))[1]
    with Image.open(frame) as img:
        size = img.size
    cut = Image.new("RGB", size)
    cut.save(frame)
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, err = twin("propagation", *_davis_argv(davis_copy, out))
    clean_failure(code, err, frame.name, "cannot read the image", out=out)


def test_manifest_left_running_is_reported_and_resumed(tmp_path, twin, caplog, sample_paths):
    import json
    import logging

    out = tmp_path / "out"
    argv = ["--config", CI, f"output_dir={out}", "max_frames=3"]
    assert twin("propagation", *argv)[0] == 0
    manifest = next(out.glob("*/manifest.json"))
    state = json.loads(manifest.read_text())
    assert state["status"] == "complete"
    manifest.write_text(json.dumps({**state, "status": "running"}))  # as left by a kill -9
    with caplog.at_level(logging.WARNING):
        assert twin("propagation", *argv)[0] == 0
    assert "stopped before finishing (manifest status 'running'); resuming it" in caplog.text
    assert json.loads(manifest.read_text())["status"] == "complete"
