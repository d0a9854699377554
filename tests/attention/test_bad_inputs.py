"""``python -m dino_lib.attention`` (maps and ``task: hipt``) on bad inputs: one message, exit 2, nothing left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from dino_lib.models import build_backbone

REPO = Path(__file__).resolve().parents[2]
MAPS = REPO / "params" / "attention_maps" / "ci.yaml"
HIPT = REPO / "params" / "hipt_heatmaps" / "ci.yaml"

CASES = {
    "maps: missing images": ([MAPS, "image_dir=/no/pics"], ["image_dir: /no/pics does not exist"]),
    "maps: missing video": ([MAPS, "video_input=/no/clip.mp4"], ["video_input: /no/clip.mp4 does not exist"]),
    "maps: threshold above 1": ([MAPS, "threshold=2"], ["command line: threshold: must be <= 1.0"]),
    "maps: zero images": ([MAPS, "--max_images", "0"], ["max_images: must be > 0"]),
    "maps: unknown device": ([MAPS, "device=tpu"], ["device: expected auto, cpu, cuda or cuda:N"]),
    "hipt: missing image": ([HIPT, "image_path=/no/region.png"], ["image_path: /no/region.png does not exist"]),
    "hipt: missing region weights": ([HIPT, "region_weights=/no/r.pth"], ["region_weights: /no/r.pth does not"]),
    "hipt: zero scale": ([HIPT, "--scale=0"], ["command line: scale: must be > 0"]),
    "hipt: alpha above 1": ([HIPT, "alpha=2"], ["alpha: must be <= 1"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    (config, *extra), fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("attention", "--config", config, f"output_dir={out}", *extra)
    clean_failure(code, err, *fragments, out=out)


def test_truncated_image_is_named(tmp_path, twin, clean_failure, truncated_jpeg):
    images = tmp_path / "pics"
    images.mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(images / "a.png")
    truncated_jpeg(images / "b_cut.jpg")
    out = tmp_path / "out"
    code, err = twin("attention", "--config", MAPS, f"image_dir={images}", "video_input=null", "depth=2",
                     "image_size=[64]", f"output_dir={out}")  # fmt: skip
    clean_failure(code, err, "b_cut.jpg", "cannot read the image", out=out)


def test_nan_weights_are_refused(tmp_path, twin, clean_failure):
    state = build_backbone("vit_tiny", patch_size=16, depth=2).state_dict()
    path = tmp_path / "nan.pth"
    torch.save({"teacher": {k: torch.full_like(v, float("nan")) for k, v in state.items()}}, path)
    out = tmp_path / "out"
    code, err = twin("attention", "--config", MAPS, f"pretrained_weights={path}", "depth=2", f"output_dir={out}")
    clean_failure(code, err, "nan.pth", "NaN or Inf", out=out)


def test_hipt_image_too_large_says_how_to_raise_the_limit(tmp_path, twin, clean_failure, monkeypatch):
    region = tmp_path / "region.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(region)
    monkeypatch.setenv("DINO_LIB_MAX_IMAGE_PIXELS", "1000")
    out = tmp_path / "out"
    code, err = twin("attention", "--config", HIPT, f"image_path={region}", f"output_dir={out}")
    clean_failure(code, err, "region.png", "too large", "DINO_LIB_MAX_IMAGE_PIXELS", out=out)
