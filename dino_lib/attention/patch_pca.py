"""PCA of ViT patch features shown as colours: the figure of DINOv2 (Oquab et al., 2023, Fig. 1 and 9).

Recipe, as DINOv2 describes it: take the final (normed) patch tokens of a few images of related content, fit one PCA
on all their patches, threshold the first component to separate foreground from background, fit a second PCA on
the foreground patches only and show its first three components as red, green and blue (background black).
Matching parts of different objects then get matching colours. CLS and register tokens are not patches and are
left out. The sign of the first component is arbitrary: it is flipped so that patches on the image border (usually
background) score low.

Only arrays come out; :mod:`dino_lib.viz.pca` draws them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from dino_lib.attention.extract import num_prefix_tokens, vit_tokens
from dino_lib.attention.preprocess import Geometry, preprocess

__all__ = ["PatchPCA", "patch_features", "patch_pca", "image_patch_pca", "grid_to_picture"]


@dataclasses.dataclass
class PatchPCA:
    """Per image (lists in input order) on the patch grid ``(h, w)``.

    Attributes:
        rgb: ``(h, w, 3)`` in [0, 1]: the first three components of the foreground PCA, background 0.
        foreground: ``(h, w)`` bool mask from the first component of the PCA of all patches.
        first: ``(h, w)`` the first component of all patches scaled to [0, 1] over every image.
        explained: fraction of variance of the three colour components.
        threshold: the foreground threshold on ``first``.
    """

    rgb: list[np.ndarray]
    foreground: list[np.ndarray]
    first: list[np.ndarray]
    explained: np.ndarray
    threshold: float | None


@torch.no_grad()
def patch_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final-normed patch tokens ``(B, h, w, D)`` of a DINO or timm ViT; CLS and register tokens skipped."""
    ps = getattr(model, "patch_size", None) or model.patch_embed.patch_size
    ph, pw = (ps, ps) if isinstance(ps, int) else ps
    h, w = x.shape[-2] // ph, x.shape[-1] // pw
    tokens = model.norm(model.blocks(vit_tokens(model, x)))  # (B, prefix + h*w, D)
    patches = tokens[:, num_prefix_tokens(model) :]
    return patches.reshape(x.shape[0], h, w, -1).float()


def _pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections ``(N, k)`` of the rows of ``x`` on its first ``k`` principal axes and their variance fractions.

    Signs are fixed (largest loading of each axis positive) so results do not depend on the SVD routine.
    """
    centred = x.double() - x.double().mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(k, vh.shape[0])
    axes = vh[:k]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * signs
    var = s**2
    return (centred @ axes.T).float(), (var[:k] / var.sum().clamp_min(1e-12)).float()


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale each column to [0, 1] (a constant column becomes 0)."""
    lo, hi = x.min(0).values, x.max(0).values
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def patch_pca(features: Sequence[torch.Tensor], *, threshold: float | None = 0.5) -> PatchPCA:
    """The DINOv2 colouring of patch features ``[(h_i, w_i, D), ...]`` (grids may differ between images).

    Args:
        features: patch features per image, e.g. from :func:`patch_features`.
        threshold: foreground threshold on the first component scaled to [0, 1]; ``None`` colours every patch
            with the PCA of all patches (no mask).

    Raises:
        ValueError: no features, or fewer than 3 patches in all.
    """
    if not features:
        raise ValueError("patch_pca needs the patch features of at least one image")
    shapes = [tuple(f.shape[:2]) for f in features]
    flat = torch.cat([f.reshape(-1, f.shape[-1]).float().cpu() for f in features])  # (N, D)
    if flat.shape[0] < 3:
        raise ValueError(f"patch_pca needs at least 3 patches, found {flat.shape[0]}; use larger images")
    first_raw, _ = _pca(flat, 1)
    first_raw = first_raw[:, 0]
    border = torch.cat([_border(first_raw, shapes, i) for i in range(len(shapes))])
    if border.mean() > first_raw.mean():  # background (the border) should score low
        first_raw = -first_raw
    first = _minmax(first_raw[:, None])[:, 0]
    mask = first > threshold if threshold is not None else torch.ones_like(first, dtype=torch.bool)
    if int(mask.sum()) < 3:  # nothing stands out: colour everything rather than nothing
        mask = torch.ones_like(mask)
    proj, explained = _pca(flat[mask], 3)
    colours = torch.zeros(flat.shape[0], 3)
    colours[mask, : proj.shape[1]] = _minmax(proj)
    rgb, fg, fc = [], [], []
    start = 0
    for h, w in shapes:
        sl = slice(start, start + h * w)
        rgb.append(colours[sl].reshape(h, w, 3).numpy())
        fg.append(mask[sl].reshape(h, w).numpy())
        fc.append(first[sl].reshape(h, w).numpy())
        start += h * w
    return PatchPCA(rgb, fg, fc, explained.numpy(), threshold)


def _border(values: torch.Tensor, shapes: list[tuple[int, int]], index: int) -> torch.Tensor:
    start = sum(h * w for h, w in shapes[:index])
    h, w = shapes[index]
    grid = values[start : start + h * w].reshape(h, w)
    ring = torch.ones(h, w, dtype=torch.bool)
    if h > 2 and w > 2:
        ring[1:-1, 1:-1] = False
    return grid[ring]


def grid_to_picture(grid: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A patch-grid array ``(h, w, ...)`` repeated to pixels and cut to the picture the grid covers."""
    p = geometry.patch_size
    full = np.repeat(np.repeat(grid, p, axis=0), p, axis=1)
    h, w = geometry.display_hw
    return full[:h, :w]


def image_patch_pca(
    model: nn.Module,
    images: Sequence[str | Path | np.ndarray],
    *,
    patch_size: int,
    image_size: int | tuple[int, int] | None = 224,
    mode: str = "pad",
    threshold: float | None = 0.5,
) -> tuple[PatchPCA, list[np.ndarray], list[Geometry]]:
    """Pre-process ``images``, extract their patch features one by one and colour them together.

    Returns:
        ``(pca, pictures, geometries)``; ``grid_to_picture(pca.rgb[i], geometries[i])`` lies on ``pictures[i]``.
    """
    device = next(model.parameters()).device
    feats, pictures, geometries = [], [], []
    for image in images:
        x, picture, geometry = preprocess(image, patch_size=patch_size, image_size=image_size, mode=mode)
        feats.append(patch_features(model, x[None].to(device))[0].cpu())
        pictures.append(picture)
        geometries.append(geometry)
    return patch_pca(feats, threshold=threshold), pictures, geometries
