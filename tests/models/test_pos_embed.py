"""Positional-embedding interpolation against an independent NumPy bicubic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed

from dino_lib.models import build_backbone, interpolate_pos_embed

A = -0.75  # cubic convolution coefficient used by PyTorch's bicubic


def cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.75."""
    t = np.abs(t)
    near = ((A + 2) * t - (A + 3)) * t * t + 1
    far = ((A * t - 5 * A) * t + 8 * A) * t - 4 * A
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int, inv_scale: float) -> np.ndarray:
    """(n_out, n_in) resampling weights: src = (dst + 0.5) * inv_scale - 0.5, 4 taps, indices clamped to the border."""
    m = np.zeros((n_out, n_in))
    for dst in range(n_out):
        src = (dst + 0.5) * inv_scale - 0.5
        base = np.floor(src)
        for tap in range(-1, 3):
            idx = int(min(max(base + tap, 0), n_in - 1))
            m[dst, idx] += cubic(src - (base + tap))
    return m


def numpy_resize(grid: np.ndarray, out_hw: tuple[int, int], inv_scale_hw: tuple[float, float]) -> np.ndarray:
    """Separable bicubic of a (s, s, D) grid to (h, w, D)."""
    rows = bicubic_matrix(grid.shape[0], out_hw[0], inv_scale_hw[0])
    cols = bicubic_matrix(grid.shape[1], out_hw[1], inv_scale_hw[1])
    return np.einsum("hi,ijd,wj->hwd", rows, grid.astype(np.float64), cols)


def table(side: int = 14, dim: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1 + side * side, dim, generator=gen) * 0.02


def patch_grid(pos: torch.Tensor, h: int, w: int) -> np.ndarray:
    return pos[0, 1:].reshape(h, w, -1).numpy()


@pytest.mark.parametrize("hw", [(6, 6), (15, 20), (30, 40), (60, 80)])
def test_dino_rule_matches_numpy_scale_factor_bicubic(hw: tuple[int, int]) -> None:
    pos = table()
    out = interpolate_pos_embed(pos, hw, mode="dino")
    assert out.shape == (1, 1 + hw[0] * hw[1], 16)
    torch.testing.assert_close(out[:, :1], pos[:, :1])  # CLS row untouched
    source = patch_grid(pos, 14, 14)
    # scale factor = (g + 0.1) / 14; the coordinate map uses its inverse, not the ratio of the sizes
    expected = numpy_resize(source, hw, (14 / (hw[0] + 0.1), 14 / (hw[1] + 0.1)))
    np.testing.assert_allclose(patch_grid(out, *hw), expected, atol=1e-6)
    size_form = numpy_resize(source, hw, (14 / hw[0], 14 / hw[1]))
    assert np.abs(patch_grid(out, *hw) - size_form).max() > 1e-4  # the +0.1 really shifts the samples


@pytest.mark.parametrize("hw", [(6, 6), (15, 20), (60, 80)])
def test_size_rule_matches_numpy_size_bicubic(hw: tuple[int, int]) -> None:
    pos = table()
    out = interpolate_pos_embed(pos, hw, mode="size")
    expected = numpy_resize(patch_grid(pos, 14, 14), hw, (14 / hw[0], 14 / hw[1]))
    np.testing.assert_allclose(patch_grid(out, *hw), expected, atol=1e-6)


def test_size_form_differs_from_dino_form_by_spec_amount() -> None:
    """Spec: up to ~0.022 max abs for a 6 x 6 target, ~0.004-0.008 for 30-60 grids, on a std-0.02 table."""
    pos = table(dim=384, seed=1)
    diff6 = interpolate_pos_embed(pos, (6, 6), mode="dino") - interpolate_pos_embed(pos, (6, 6), mode="size")
    assert 0.01 < diff6.abs().max().item() < 0.04
    diff30 = interpolate_pos_embed(pos, (30, 40), mode="dino") - interpolate_pos_embed(pos, (30, 40), mode="size")
    assert 0.002 < diff30.abs().max().item() < diff6.abs().max().item()


def test_timm_mode_equals_timm_resampler() -> None:
    pos = table()
    for hw in [(6, 6), (20, 30)]:
        ours = interpolate_pos_embed(pos, hw, mode="timm")
        theirs = resample_abs_pos_embed(
            pos, list(hw), (14, 14), num_prefix_tokens=1, interpolation="bicubic", antialias=True
        )
        torch.testing.assert_close(ours, theirs)
    # PyTorch's anti-aliased bicubic (PIL-style, a = -0.5 kernel) differs from the plain one
    assert not torch.allclose(
        interpolate_pos_embed(pos, (6, 6), mode="timm"), interpolate_pos_embed(pos, (6, 6), mode="size"), atol=1e-5
    )


def test_rule_1_square_image_with_n0_patches_keeps_table() -> None:
    pos = table()
    assert interpolate_pos_embed(pos, (14, 14), image_hw=(224, 224)) is pos
    assert interpolate_pos_embed(pos, (14, 14)) is pos  # default image = square grid
    resampled = interpolate_pos_embed(pos, (14, 14), image_hw=(224, 230))  # 14 x 14 patches, not square
    assert resampled.shape == pos.shape
    assert not torch.allclose(resampled, pos)
    expected = numpy_resize(patch_grid(pos, 14, 14), (14, 14), (14 / 14.1, 14 / 14.1))
    np.testing.assert_allclose(patch_grid(resampled, 14, 14), expected, atol=1e-6)
    # a non-square grid with N0 patches (e.g. 7 x 28) is resampled too
    assert interpolate_pos_embed(pos, (7, 28)).shape == pos.shape


def test_model_uses_its_interpolation_mode() -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=1)
    ref = interpolate_pos_embed(model.pos_embed, (6, 6), mode="dino")
    torch.testing.assert_close(model.interpolate_pos_encoding((6, 6), (96, 96)), ref)
    model.pos_interpolation = "size"
    torch.testing.assert_close(
        model.interpolate_pos_encoding((6, 6), (96, 96)), interpolate_pos_embed(model.pos_embed, (6, 6), mode="size")
    )


@pytest.mark.parametrize("side", [14, 28])  # stored tables of p = 16 and p = 8
def test_every_grid_1_to_40_by_7_14_23_60_works(side: int) -> None:
    pos = table(side=side, dim=2)
    for a in range(1, 41):
        for b in (7, 14, 23, 60):
            for hw in ((a, b), (b, a)):
                assert interpolate_pos_embed(pos, hw).shape == (1, 1 + hw[0] * hw[1], 2)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(torch.zeros(1, 1 + 10, 4), (3, 3))
    with pytest.raises(ValueError, match="unknown positional interpolation mode"):
        interpolate_pos_embed(table(), (3, 3), mode="nearest")  # type: ignore[arg-type]


def test_dtype_is_kept() -> None:
    pos = table().to(torch.bfloat16)
    assert interpolate_pos_embed(pos, (5, 7)).dtype == torch.bfloat16
