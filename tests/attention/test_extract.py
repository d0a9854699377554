"""Attention extraction: fused vs explicit paths, reference equivalence, any size, timm registers."""

from __future__ import annotations

import pytest
import torch

from dino_lib.attention import attention_maps, capture_attention, selfattention
from dino_lib.models import DinoVisionTransformer, build_backbone


def _tiny(patch: int = 16, depth: int = 2) -> DinoVisionTransformer:
    torch.manual_seed(0)
    return DinoVisionTransformer(patch_size=patch, embed_dim=32, depth=depth, num_heads=2).eval()


def _manual_attention(model: DinoVisionTransformer, x: torch.Tensor, block: int) -> torch.Tensor:
    """Independent re-derivation: run the blocks, then softmax(q k^T / sqrt(d)) from block's own qkv weights."""
    tokens = model.prepare_tokens(x)
    for blk in model.blocks[:block]:
        tokens = blk(tokens)
    blk = model.blocks[block]
    y = torch.nn.functional.layer_norm(tokens, (tokens.shape[-1],), blk.norm1.weight, blk.norm1.bias, eps=1e-6)
    b, t, d = y.shape
    heads = blk.attn.num_heads
    qkv = y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias  # (B, T, 3D)
    q, k = qkv[..., :d], qkv[..., d : 2 * d]
    q = q.reshape(b, t, heads, -1).transpose(1, 2)
    k = k.reshape(b, t, heads, -1).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)  # (B, heads, T, T)


@pytest.mark.parametrize("hw", [(48, 48), (48, 80), (50, 71)])
def test_fused_and_explicit_paths_give_same_outputs(hw):
    model = _tiny()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        fused = model.forward_features(x)
        with capture_attention(model, layers=[0, 1]) as cap:
            explicit = model.forward_features(x)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    # the captured probabilities are the reference quantity
    torch.testing.assert_close(cap[1], _manual_attention(model, x[..., : hw[0] // 16 * 16, : hw[1] // 16 * 16], 1))


def test_fused_and_explicit_paths_bf16():
    model = _tiny()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused = model.forward_features(x).float()
        with capture_attention(model, layers=[-1]):
            explicit = model.forward_features(x).float()
    torch.testing.assert_close(explicit, fused, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("hw", [(64, 64), (48, 96), (70, 45)])
def test_cls_maps_equal_reference_computation(hw):
    model = _tiny()
    x = torch.randn(2, 3, *hw)
    out = attention_maps(model, x, layers=(0, -1))
    h, w = hw[0] // 16, hw[1] // 16
    assert out.maps.shape == (2, 2, 2, h, w)
    assert out.grid_hw == (h, w) and out.layers == [0, 1]
    crop = x[..., : h * 16, : w * 16]
    for pos, block in enumerate((0, 1)):
        full = _manual_attention(model, crop, block)
        torch.testing.assert_close(out.maps[:, pos], full[:, :, 0, 1:].reshape(2, 2, h, w), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.prefix_mass[:, pos, :, 0], full[:, :, 0, 0], atol=1e-6, rtol=1e-5)
    # rows of the softmax sum to one over all keys (patches + prefix)
    total = out.maps.sum(dim=(-2, -1)) + out.prefix_mass.sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total))


def test_get_last_selfattention_matches_independent_softmax():
    model = _tiny()
    x = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(selfattention(model, x, -1), _manual_attention(model, x, 1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.get_last_selfattention(x).detach(), _manual_attention(model, x, 1).detach())


def test_patch_and_mean_queries():
    model = _tiny()
    x = torch.randn(1, 3, 48, 64)
    full = _manual_attention(model, x, 1)  # (1, heads, 13, 13)
    patch = attention_maps(model, x, query=(1, 2)).maps[0, 0]
    torch.testing.assert_close(patch, full[0, :, 1 + 1 * 4 + 2, 1:].reshape(2, 3, 4), atol=1e-6, rtol=1e-5)
    mean = attention_maps(model, x, query="mean", query_chunk=5).maps[0, 0]
    torch.testing.assert_close(mean, full[0, :, 1:, 1:].mean(dim=1).reshape(2, 3, 4), atol=1e-6, rtol=1e-5)


def test_head_selection_and_bf16_close_to_fp32():
    model = _tiny(patch=8)
    x = torch.randn(2, 3, 40, 56)
    ref = attention_maps(model, x).maps
    picked = attention_maps(model, x, heads=[1]).maps
    torch.testing.assert_close(picked[:, :, 0], ref[:, :, 1])
    low = attention_maps(model, x, dtype=torch.bfloat16).maps
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=2e-2, rtol=0.1)


def test_capture_restores_fused_flags_and_hooks_even_on_error():
    model = _tiny()
    flags = [blk.attn.fused_attn for blk in model.blocks]
    with pytest.raises(ValueError, match="boom"):
        with capture_attention(model, layers=[0]):
            assert model.blocks[0].attn.fused_attn is False
            raise ValueError("boom")
    assert [blk.attn.fused_attn for blk in model.blocks] == flags
    assert not model.blocks[0].attn.attn_drop._forward_pre_hooks


def test_capture_raises_when_nothing_was_captured():
    model = _tiny()
    with capture_attention(model, layers=[1]) as cap:
        pass  # the model is never called
    with pytest.raises(RuntimeError, match="no attention was captured"):
        cap[1]
    with pytest.raises(KeyError):
        cap[0]


def test_timm_vit_with_registers():
    torch.manual_seed(0)
    model = build_backbone("timm:vit_small_patch16_224", reg_tokens=4, dynamic_img_size=True, depth=2).eval()
    assert model.num_prefix_tokens == 5
    x = torch.randn(1, 3, 64, 96)
    out = attention_maps(model, x)
    assert out.maps.shape == (1, 1, 6, 4, 6) and out.prefix_mass.shape == (1, 1, 6, 5)
    with torch.no_grad(), capture_attention(model, layers=[-1]) as cap:
        model.forward_features(x)
    full = cap[-1]  # (1, 6, 29, 29): CLS, 4 registers, 24 patches
    torch.testing.assert_close(out.maps[0, 0], full[0, :, 0, 5:].reshape(6, 4, 6), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.prefix_mass[0, 0], full[0, :, 0, :5], atol=1e-6, rtol=1e-5)


def test_timm_fused_model_480_shape():
    """The measured matrix: (1, 6, 901, 901) for 480 x 480 at p16 with dynamic_img_size."""
    torch.manual_seed(0)
    model = build_backbone("timm:vit_small_patch16_224", dynamic_img_size=True, depth=2).eval()
    assert model.blocks[-1].attn.fused_attn  # fused by default
    with torch.no_grad(), capture_attention(model, layers=[-1]) as cap:
        model.forward_features(torch.randn(1, 3, 480, 480))
    assert cap[-1].shape == (1, 6, 901, 901)
    assert model.blocks[-1].attn.fused_attn


def test_bad_inputs_fail_clearly():
    model = _tiny()
    with pytest.raises(IndexError, match="out of range"):
        attention_maps(model, torch.randn(1, 3, 32, 32), layers=(5,))
    with pytest.raises(ValueError, match="query"):
        attention_maps(model, torch.randn(1, 3, 32, 32), query="nope")
    with pytest.raises(TypeError, match="Vision Transformer"):
        attention_maps(build_backbone("resnet18"), torch.randn(1, 3, 32, 32))
