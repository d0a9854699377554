"""DINO ViT backbone: key layout, sizes, block arithmetic and auxiliary APIs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dino_lib.models import DinoVisionTransformer, build_backbone

SIZES = {"vit_tiny": (192, 3), "vit_small": (384, 6), "vit_base": (768, 12)}  # D, heads (the released DINO models)


def dino_keys(depth: int = 12) -> list[str]:
    """The released DINO backbone key list, written out by hand."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
    return keys + ["norm.weight", "norm.bias"]


def expected_params(dim: int, patch: int, depth: int = 12) -> int:
    """Parameter count by hand: patch conv, cls, pos table, depth x (LN, qkv, proj, LN, fc1, fc2), final LN."""
    n0 = (224 // patch) ** 2
    block = 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim + (4 * dim * dim + 4 * dim)
    block += 4 * dim * dim + dim
    return (3 * patch * patch * dim + dim) + dim + (n0 + 1) * dim + depth * block + 2 * dim


@pytest.fixture(scope="module")
def tiny() -> DinoVisionTransformer:
    torch.manual_seed(0)
    return build_backbone("vit_tiny", depth=2).eval()


def images(*hw: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("patch", [8, 16])
def test_state_dict_keys_and_parameter_count(size: str, patch: int) -> None:
    with torch.device("meta"):  # shapes and names only: no memory, no init time
        model = build_backbone(size, patch_size=patch)
    state = model.state_dict()
    assert list(state) == dino_keys(12)
    assert len(state) == 150
    dim, heads = SIZES[size]
    assert tuple(state["pos_embed"].shape) == (1, (224 // patch) ** 2 + 1, dim)
    assert tuple(state["patch_embed.proj.weight"].shape) == (dim, 3, patch, patch)
    assert (model.embed_dim, model.num_heads, model.patch_size) == (dim, heads, patch)
    assert model.backbone_name == f"{size}_patch{patch}"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_params(dim, patch)


@pytest.mark.parametrize(
    ("name", "millions"),
    [
        ("vit_tiny_patch16", 5.52),
        ("vit_small_patch16", 21.67),
        ("vit_small_patch8", 21.67),
        ("vit_base_patch16", 85.80),
        ("vit_base_patch8", 85.81),
    ],
)
def test_parameter_counts_match_spec_table(name: str, millions: float) -> None:
    with torch.device("meta"):
        model = build_backbone(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_vit_small_exact_parameter_count() -> None:
    with torch.device("meta"):
        model = build_backbone("vit_small")
    assert sum(p.numel() for p in model.parameters()) == 21_665_664


def test_patch_size_in_name_and_argument_must_agree() -> None:
    with pytest.raises(ValueError, match="patch 8"):
        build_backbone("vit_small_patch8", patch_size=16)


def test_layernorm_eps_gelu_and_qkv_bias(tiny: DinoVisionTransformer) -> None:
    norms = [m for m in tiny.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1
    assert all(m.eps == 1e-6 for m in norms)
    for blk in tiny.blocks:
        assert isinstance(blk.mlp.act, nn.GELU) and blk.mlp.act.approximate == "none"
        assert blk.attn.qkv.bias is not None
    assert isinstance(tiny.head, nn.Identity)


def _reference_forward(model: DinoVisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Pre-norm blocks written out with functional ops; 224-px square input only."""
    p = model.patch_size
    tokens = F.conv2d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=p)  # (B, D, h, w)
    tokens = tokens.flatten(2).transpose(1, 2)  # (B, h*w, D), row-major
    b, _, d = tokens.shape
    t = torch.cat([model.cls_token.expand(b, -1, -1), tokens], 1) + model.pos_embed
    heads = model.num_heads
    for blk in model.blocks:
        y = F.layer_norm(t, (d,), blk.norm1.weight, blk.norm1.bias, eps=1e-6)
        qkv = F.linear(y, blk.attn.qkv.weight, blk.attn.qkv.bias).reshape(b, -1, 3, heads, d // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, hd)
        a = ((q @ k.transpose(-2, -1)) / math.sqrt(d // heads)).softmax(-1)  # (B, heads, T, T)
        o = (a @ v).transpose(1, 2).reshape(b, -1, d)
        t = t + F.linear(o, blk.attn.proj.weight, blk.attn.proj.bias)
        y = F.layer_norm(t, (d,), blk.norm2.weight, blk.norm2.bias, eps=1e-6)
        hidden = F.linear(y, blk.mlp.fc1.weight, blk.mlp.fc1.bias)
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
        t = t + F.linear(hidden, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    return F.layer_norm(t, (d,), model.norm.weight, model.norm.bias, eps=1e-6)


def test_forward_matches_functional_reference(tiny: DinoVisionTransformer) -> None:
    x = images(224, 224)
    with torch.no_grad():
        ref = _reference_forward(tiny, x)
        torch.testing.assert_close(tiny.forward_features(x), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(tiny(x), ref[:, 0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hw", [(224, 224), (96, 96), (224, 320), (480, 640)])
def test_forward_shapes_at_several_sizes(tiny: DinoVisionTransformer, hw: tuple[int, int]) -> None:
    x = images(*hw, batch=1)
    with torch.no_grad():
        feats = tiny.forward_features(x)
        cls = tiny(x)
    assert feats.shape == (1, 1 + (hw[0] // 16) * (hw[1] // 16), 192)
    assert cls.shape == (1, 192)
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(cls, feats[:, 0])


def test_sides_not_multiple_of_patch_lose_the_remainder(tiny: DinoVisionTransformer) -> None:
    """The reference's strided conv floors; the remainder pixels have no influence."""
    x = images(100, 97, batch=1)
    y = x.clone()
    y[..., 96:, :] = 7.0
    y[..., :, 96:] = -7.0
    with torch.no_grad():
        fx, fy = tiny.forward_features(x), tiny.forward_features(y)
    assert fx.shape == (1, 1 + 6 * 6, 192)
    torch.testing.assert_close(fx, fy)


def test_non_square_image_with_n0_patches_uses_resampled_table(tiny: DinoVisionTransformer) -> None:
    """224 x 230 at p16 has 14 x 14 patches but is not square: the reference resamples the table (rule 1)."""
    x = images(224, 230, batch=1)
    with torch.no_grad():
        wide, cropped = tiny(x), tiny(x[..., :224])
    assert not torch.allclose(wide, cropped, atol=1e-5)


def test_intermediate_layers_are_normed_and_last_cls_equals_forward(tiny: DinoVisionTransformer) -> None:
    x = images(96, 96)
    with torch.no_grad():
        outs = tiny.get_intermediate_layers(x, n=2)
        assert len(outs) == 2 and all(o.shape == (2, 37, 192) for o in outs)
        torch.testing.assert_close(outs[-1][:, 0], tiny(x))
        first = tiny.norm(tiny.blocks[0](tiny.prepare_tokens(x)))  # oldest first, through the final norm
        torch.testing.assert_close(outs[0], first)
        assert len(tiny.get_intermediate_layers(x)) == 1


def test_last_selfattention_matches_explicit_computation(tiny: DinoVisionTransformer) -> None:
    x = images(64, 80)
    with torch.no_grad():
        attn = tiny.get_last_selfattention(x)
        t = tiny.blocks[0](tiny.prepare_tokens(x))
        last = tiny.blocks[-1]
        d, heads = 192, 3
        y = F.layer_norm(t, (d,), last.norm1.weight, last.norm1.bias, eps=1e-6)
        q, k, _ = (y @ last.attn.qkv.weight.T + last.attn.qkv.bias).reshape(2, -1, 3, heads, 64).unbind(2)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, heads, T, hd)
        expected = torch.softmax(q @ k.transpose(-2, -1) / 8.0, dim=-1)  # (B, heads, T, T)
    assert attn.shape == (2, 3, 1 + 4 * 5, 1 + 4 * 5) and attn.dtype == torch.float32
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 21))
    torch.testing.assert_close(attn, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tiny.get_selfattention(x, block=1), attn)
    assert not torch.allclose(tiny.get_selfattention(x, block=0), attn)


def test_fused_attention_equals_unfused(tiny: DinoVisionTransformer) -> None:
    x = images(96, 128)
    assert all(blk.attn.fused_attn for blk in tiny.blocks)  # SDPA is the default path
    with torch.no_grad():
        fused = tiny.forward_features(x)
        try:
            for blk in tiny.blocks:
                blk.attn.fused_attn = False
            unfused = tiny.forward_features(x)
        finally:
            for blk in tiny.blocks:
                blk.attn.fused_attn = True
    torch.testing.assert_close(fused, unfused, atol=1e-5, rtol=1e-4)


def test_bf16_cpu_explicit_attention_matches_flash_kernel() -> None:
    """The explicit bf16 CPU path (short sequences) agrees with the SDPA kernel in outputs and gradients."""
    from dino_lib.models import vit

    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2).train()
    x = images(48, 64)

    def run(max_tokens: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        old = vit.EXPLICIT_BF16_MAX_TOKENS
        vit.EXPLICIT_BF16_MAX_TOKENS = max_tokens
        try:
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.forward_features(x)
            out.float().square().mean().backward()
        finally:
            vit.EXPLICIT_BF16_MAX_TOKENS = old
        return out.float(), [p.grad.clone() for p in model.parameters()]

    explicit, g_explicit = run(10_000)
    flash, g_flash = run(0)  # every sequence longer than 0 tokens: SDPA
    torch.testing.assert_close(explicit, flash, atol=5e-2, rtol=5e-2)
    for a, b in zip(g_explicit, g_flash):
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_fp32_attention_unchanged_by_bf16_fast_path(tiny: DinoVisionTransformer) -> None:
    """Outside bf16 the attention is timm's SDPA path bit for bit, whatever the explicit-path threshold."""
    from timm.layers import Attention

    from dino_lib.models import vit

    x = images(64, 64)
    with torch.no_grad():
        ours = tiny.forward_features(x)
        old = vit.EXPLICIT_BF16_MAX_TOKENS
        try:
            vit.EXPLICIT_BF16_MAX_TOKENS = 0
            for blk in tiny.blocks:
                blk.attn.__class__ = Attention  # timm's own forward
            ref = tiny.forward_features(x)
        finally:
            vit.EXPLICIT_BF16_MAX_TOKENS = old
            for blk in tiny.blocks:
                blk.attn.__class__ = vit.DinoAttention
    assert torch.equal(ours, ref)


def test_drop_path_linear_rates_and_train_mode_only() -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=3, drop_path_rate=0.4)
    rates = [getattr(blk.drop_path1, "drop_prob", 0.0) for blk in model.blocks]
    assert rates == pytest.approx([0.0, 0.2, 0.4])
    assert isinstance(model.blocks[0].drop_path1, nn.Identity)
    x = images(32, 32, batch=8)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        torch.testing.assert_close(a, b)
        model.train()
        c, d = model(x), model(x)
    assert not torch.allclose(c, d)
    assert not torch.allclose(a, c)
    no_drop = build_backbone("vit_tiny", depth=3, drop_path_rate=0.0)
    no_drop.load_state_dict(model.state_dict())
    no_drop.train()  # without drop path, train mode is deterministic (all dropouts are 0)
    with torch.no_grad():
        torch.testing.assert_close(no_drop(x), a)


def test_bf16_autocast_close_to_fp32(tiny: DinoVisionTransformer) -> None:
    x = images(96, 96)
    with torch.no_grad():
        ref = tiny(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny(x)
            attn = tiny.get_last_selfattention(x)
    assert attn.dtype == torch.float32
    cos = F.cosine_similarity(low.float(), ref, dim=-1)
    assert cos.min() > 0.99
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_reference_initialisation() -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_small", depth=2)
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].attn.qkv.bias.abs().max() == 0
    assert (model.norm.weight == 1).all() and (model.norm.bias == 0).all()
    conv = model.patch_embed.proj.weight  # PyTorch default (kaiming uniform a=sqrt(5)): bound 1/sqrt(fan_in)
    assert conv.abs().max() <= 1 / math.sqrt(3 * 16 * 16) + 1e-6
