"""Region ViT (vit4k_xs): sizes, HIPT key parity, positional interpolation, masks."""

from __future__ import annotations

import logging

import pytest
import torch

from dino_lib.models import CheckpointError, interpolate_pos_embed
from dino_lib.models.region_vit import build_region_vit, load_region_vit


def _hipt_key_shapes() -> dict[str, tuple[int, ...]]:
    """The 78 keys of the published vit4k_xs state dict, written out by hand."""
    keys = {"phi.0.weight": (192, 384), "phi.0.bias": (192,), "cls_token": (1, 1, 192), "pos_embed": (1, 197, 192)}
    for i in range(6):
        b = f"blocks.{i}."
        keys |= {b + "norm1.weight": (192,), b + "norm1.bias": (192,), b + "attn.qkv.weight": (576, 192),
                 b + "attn.qkv.bias": (576,), b + "attn.proj.weight": (192, 192), b + "attn.proj.bias": (192,),
                 b + "norm2.weight": (192,), b + "norm2.bias": (192,), b + "mlp.fc1.weight": (768, 192),
                 b + "mlp.fc1.bias": (768,), b + "mlp.fc2.weight": (192, 768), b + "mlp.fc2.bias": (192,)}  # fmt: skip
    return keys | {"norm.weight": (192,), "norm.bias": (192,)}


def test_key_parity_and_parameter_count() -> None:
    model = build_region_vit("vit4k_xs")
    expected = _hipt_key_shapes()
    assert len(expected) == 78
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert sum(p.numel() for p in model.parameters()) == 2_781_504


def test_loads_full_dino_checkpoint_by_key(tmp_path) -> None:
    source = build_region_vit("vit4k_xs")
    teacher = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    teacher["head.last_layer.weight_g"] = torch.ones(8, 1)
    student = {f"module.backbone.{k}": torch.zeros_like(v) for k, v in source.state_dict().items()}
    path = tmp_path / "vit4k_xs_dino.pth"
    torch.save({"teacher": teacher, "student": student, "epoch": 3}, path)
    model = build_region_vit("vit4k_xs")
    report = load_region_vit(model, path)
    assert report.loaded == 78 and not report.missing and not report.unexpected and report.ignored
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(2, 384, 16, 16)
    torch.testing.assert_close(model.eval()(x), source.eval()(x))


def test_load_reports_missing_keys_and_resizes_pos_table(tmp_path, caplog) -> None:
    state = build_region_vit("vit4k_xs").state_dict()
    del state["norm.bias"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="norm.bias"):
        load_region_vit(build_region_vit("vit4k_xs"), path)
    state = build_region_vit("vit4k_xs", pos_grid=16).state_dict()  # an older 16 x 16 table
    torch.save(state, path)
    with caplog.at_level(logging.WARNING):
        report = load_region_vit(build_region_vit("vit4k_xs"), path)
    assert report.resampled == ["pos_embed"] and "resized pos_embed" in caplog.text


@pytest.mark.parametrize("grid", [(g, g) for g in range(1, 17)] + [(3, 5), (16, 8), (1, 7)])
def test_positional_interpolation_shapes_and_dino_rule(grid) -> None:
    model = build_region_vit("vit4k_xs")
    table = model.interpolate_pos_encoding(grid)
    assert table.shape == (1, 1 + grid[0] * grid[1], 192)
    torch.testing.assert_close(table, interpolate_pos_embed(model.pos_embed, grid, mode="dino"))
    if grid == (14, 14):
        assert table is model.pos_embed  # the global-crop grid uses the table unchanged
    out = model(torch.randn(1, 384, *grid))
    assert out.shape == (1, 192)


@pytest.mark.parametrize("dim", [384, 768, 1024])
def test_input_dims(dim: int) -> None:
    model = build_region_vit("vit4k_xs", input_dim=dim, depth=1)
    assert model(torch.randn(2, dim, 6, 6)).shape == (2, 192)
    with pytest.raises(ValueError, match=f"expects a \\(B, {dim}, g_h, g_w\\)"):
        model(torch.randn(2, dim + 1, 6, 6))


def test_api_shapes_and_drop_path() -> None:
    model = build_region_vit("vit4k_xs", drop_path_rate=0.1).eval()
    x = torch.randn(2, 384, 16, 16)
    assert model.get_last_selfattention(x).shape == (2, 6, 257, 257)
    layers = model.get_intermediate_layers(x, n=2)
    assert len(layers) == 2 and layers[-1].shape == (2, 257, 192)
    torch.testing.assert_close(layers[-1][:, 0], model(x))
    rates = [blk.drop_path1.drop_prob if hasattr(blk.drop_path1, "drop_prob") else 0.0 for blk in model.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)


def test_key_padding_mask_hides_background_tiles() -> None:
    model = build_region_vit("vit4k_xs", depth=2).eval()
    x = torch.randn(1, 384, 4, 4)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[:, 2:] = False  # bottom half is background
    out = model(x, mask)
    y = x.clone()
    y[:, :, 2:] = torch.randn(1, 384, 2, 4)  # changing background features must not change the CLS output
    torch.testing.assert_close(model(y, mask), out)
    assert not torch.allclose(model(y), model(x))
    with torch.no_grad():
        attn = model.get_last_selfattention(x, mask=mask)
    assert float(attn[0, :, 0, 1 + 8 :].abs().max()) == 0.0
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 6, 17))
