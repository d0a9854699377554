"""Parameter sets, config validation, the pipeline and the command-line twin ``python -m dino_lib.attention``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data

from dino_lib.attention import AttentionConfig, load_model
from dino_lib.attention.__main__ import main
from dino_lib.config import ConfigError, load_config
from dino_lib.models import build_backbone

REPO = Path(__file__).resolve().parents[2]


def test_paper_parameter_set_is_the_vits8_setting():
    cfg = load_config(AttentionConfig, REPO / "params" / "attention_maps" / "dino_vits8.yaml", [])
    assert (cfg.arch, cfg.patch_size, cfg.image_size, cfg.threshold) == ("vit_small", 8, [480], 0.6)


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="aspect"):
        load_config(AttentionConfig, None, ["image_size=[100,200]"])
    with pytest.raises(ConfigError, match="ViT"):
        load_config(AttentionConfig, None, ["arch=resnet50"])
    with pytest.raises(ConfigError):
        load_config(AttentionConfig, None, ["threshold=1.5"])


def test_missing_weights_file_is_an_error(tmp_path):
    cfg = load_config(AttentionConfig, None, {"pretrained_weights": str(tmp_path / "nope.pth")})
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_model(cfg)


def test_weights_load_strictly(tmp_path):
    torch.manual_seed(1)
    source = build_backbone("vit_tiny", depth=2)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    cfg = load_config(AttentionConfig, None, {"depth": 2, "pretrained_weights": str(tmp_path / "w.pth")})
    model = load_model(cfg)
    torch.testing.assert_close(model.pos_embed, source.pos_embed)


def test_command_line_twin_writes_reference_files_and_video(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(data.chelsea()[::3, ::3]).save(images / "cat.jpg")
    Image.fromarray(data.coffee()[::4, ::4]).save(images / "coffee.png")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(data.rocket()[::5, 4 * i : 4 * i + 100]).save(frames / f"{i:03d}.jpg")
    out = tmp_path / "out"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"depth": 2, "image_size": [64], "video_fps": 4.0, "video_threshold": 0.6}))
    argv = [
        "--config",
        str(config),
        f"image_dir={images}",
        f"video_input={frames}",
        f"output_dir={out}",
        "max_images=5",
    ]
    with pytest.warns(UserWarning, match="RANDOM weights"):
        summary = main(argv)
    assert [i["name"] for i in summary["images"]] == ["cat", "coffee"]
    for name in ("cat", "coffee"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == sorted(
            ["img.png", "pca_rgb.png"]
            + [f"attn-head{j}.png" for j in range(3)]
            + [f"mask_th0.6_head{j}.png" for j in range(3)]
        )
        assert (out / f"{name}_heads.png").is_file() and (out / f"{name}_masks.png").is_file()
        picture = np.asarray(Image.open(out / name / "img.png"))
        assert np.asarray(Image.open(out / name / "pca_rgb.png")).shape == picture.shape  # colours cover the image
    assert summary["patch_pca"] == str(out / "patch_pca.png") and (out / "patch_pca.png").is_file()
    assert summary["video"]["frames"] == 3 and (out / "video.mp4").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "config.yaml").is_file()
