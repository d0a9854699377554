"""Feature extractors: DINO ViT, MAE, timm ViT from a local file, torchvision CNN cut."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dino_lib.models import build_backbone
from dino_lib.models.loading import CheckpointError
from dino_lib.propagation.backbones import build_extractor, sincos_pos_embed_2d

X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


def test_dino_vit_features_are_last_block_normed_patch_tokens(tmp_path):
    model = build_backbone("vit_tiny", patch_size=16, depth=2)
    ckpt = {
        "teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()},
        "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in model.state_dict().items()},
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    ext = build_extractor("vit_tiny", patch_size=16, pretrained_weights=str(path), model_kwargs={"depth": 2})
    feats = ext(X)
    assert feats.shape == (2, 192, 4, 6) and ext.stride == 16 and ext.std == (0.229, 0.224, 0.225)
    with torch.no_grad():
        ref = model.get_intermediate_layers(X, n=1)[0][:, 1:]  # (B, h*w, D)
    torch.testing.assert_close(feats, ref.transpose(1, 2).reshape(2, 192, 4, 6), atol=1e-5, rtol=1e-5)
    first = build_extractor("vit_tiny", patch_size=16, pretrained_weights=str(path), model_kwargs={"depth": 2}, layer=0)
    assert not torch.allclose(first(X), feats)
    assert ext.describe()["weights_hash"] != build_extractor("vit_tiny", model_kwargs={"depth": 2}).weights_hash


def test_missing_weights_file_and_wrong_patch_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_extractor("vit_tiny", pretrained_weights=str(tmp_path / "nope.pth"), model_kwargs={"depth": 2})
    torch.save(build_backbone("vit_tiny", patch_size=8, depth=2).state_dict(), tmp_path / "p8.pth")
    with pytest.raises(CheckpointError, match="patch size 8"):
        build_extractor(
            "vit_tiny", patch_size=16, pretrained_weights=str(tmp_path / "p8.pth"), model_kwargs={"depth": 2}
        )


def test_sincos_table_matches_hand_computed_values():
    table = sincos_pos_embed_2d(8, (2, 3))  # rows = y, columns = x; first half encodes x, second half y
    y, x = 1, 2
    row = table[y * 3 + x]
    omega = [1.0, 0.01]
    want = [
        math.sin(x * omega[0]),
        math.sin(x * omega[1]),
        math.cos(x * omega[0]),
        math.cos(x * omega[1]),
        math.sin(y * omega[0]),
        math.sin(y * omega[1]),
        math.cos(y * omega[0]),
        math.cos(y * omega[1]),
    ]
    torch.testing.assert_close(row, torch.tensor(want))


def test_mae_checkpoint_features_with_regenerated_and_interpolated_tables(tmp_path):
    kw = {"embed_dim": 64, "depth": 2, "num_heads": 2}
    model = build_extractor("mae_vit_base_patch16", model_kwargs=kw).model
    state = dict(model.state_dict())
    state["pos_embed"] = torch.cat([torch.zeros(1, 1, 64), sincos_pos_embed_2d(64, (14, 14))[None]], dim=1)
    state["mask_token"] = torch.zeros(1, 1, 32)
    state["decoder_embed.weight"] = torch.zeros(32, 64)
    path = tmp_path / "mae.pth"
    torch.save({"model": state}, path)
    sincos = build_extractor("mae_vit_base_patch16", pretrained_weights=str(path), model_kwargs=kw)
    interp = build_extractor(
        "mae_vit_base_patch16", pretrained_weights=str(path), model_kwargs=kw, mae_pos_embed="interpolate"
    )
    square = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(sincos(square), interp(square), atol=1e-5, rtol=1e-5)  # same grid: same table
    a, b = sincos(X), interp(X)
    assert a.shape == b.shape == (2, 64, 4, 6) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="patch size 16"):
        build_extractor("mae_vit_base_patch16", patch_size=8, model_kwargs=kw)


def test_timm_vit_from_local_file_strips_prefix_tokens(tmp_path):
    name = "timm:vit_small_patch14_reg4_dinov2"
    kw = {"depth": 1, "embed_dim": 48, "num_heads": 2, "img_size": 56}
    source = build_backbone(name, dynamic_img_size=True, **kw)
    torch.save(source.state_dict(), tmp_path / "timm.pth")
    ext = build_extractor(name, patch_size=None, pretrained_weights=str(tmp_path / "timm.pth"), model_kwargs=kw)
    x = torch.randn(1, 3, 70, 98)
    feats = ext(x)
    assert feats.shape == (1, 48, 5, 7) and ext.stride == 14
    assert ext.describe()["num_prefix_tokens"] == 5 and ext.mean == (0.485, 0.456, 0.406)
    with torch.no_grad():
        tokens = source.forward_features(x)[:, 5:]  # final-normed patch tokens
    torch.testing.assert_close(feats, tokens.transpose(1, 2).reshape(1, 48, 5, 7), atol=1e-5, rtol=1e-5)


def test_torchvision_cnn_cut_at_stage(tmp_path):
    source = build_backbone("resnet18")
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    ext = build_extractor("resnet18", patch_size=None, pretrained_weights=str(tmp_path / "r18.pth"))
    assert ext.stride == 16 and ext(X).shape == (2, 256, 4, 6)
    ext2 = build_extractor("resnet18", patch_size=None, cnn_stage="layer2")
    assert ext2.stride == 8 and ext2(X).shape == (2, 128, 8, 12)


def test_bf16_backbone_features_match_fp32(tmp_path):
    from dino_lib.propagation.features import FeatureProvider
    from dino_lib.propagation.geometry import resize_geometry

    rng = np.random.default_rng(0)
    frame = tmp_path / "f.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(frame)
    ext = build_extractor("vit_tiny", patch_size=16, model_kwargs={"depth": 2})
    geo = resize_geometry((48, 64), 16)
    feats = {}
    for precision in ("fp32", "bf16"):
        provider = FeatureProvider(ext, [frame], geo, device=torch.device("cpu"), precision=precision)
        feats[precision] = provider[0]
    assert feats["fp32"].shape == (192, 3, 4)
    cos = (feats["fp32"] * feats["bf16"]).sum(0)  # both unit-norm along D
    assert cos.min() > 0.98
