"""HIPT_4K composition: a region image -> tile embeddings -> region embedding (Chen et al., 2022).

``image (3, H, W) -> fit (explicit crop or white pad) -> row-major tiles (g_h * g_w, 3, t, t) -> frozen stage-1
ViT in batches -> (g_h * g_w, D) -> grid (1, D, g_h, g_w) -> region ViT -> (1, 192)``. Both models are frozen and
in eval mode; normalisation is the one recorded for the stage-1 encoder (not HIPT's hard-coded 0.5).
Non-square regions are supported (the region ViT interpolates its positional table); tiles that lie entirely in
the white padding can be masked out of the region ViT's attention (``mask_padding``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dino_lib.hierarchical.encoder import TileEncoder, load_tile_encoder
from dino_lib.hierarchical.tiling import PadMode, fit_region, sequence_to_grid, tile_region
from dino_lib.models.region_vit import RegionViT, build_region_vit, load_region_vit

__all__ = ["HIPTComposer", "HIPTOutput", "as_image_tensor", "load_hipt"]


def as_image_tensor(image: Any) -> torch.Tensor:
    """PIL image, ``(H, W, 3)`` uint8/float array or ``(3, H, W)`` tensor -> float ``(3, H, W)`` in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.float()
        return t / 255.0 if t.max() > 1.5 else t
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), found an array of shape {array.shape}")
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
    return t / 255.0 if array.dtype == np.uint8 else t


@dataclasses.dataclass
class HIPTOutput:
    """Embeddings of one region: region CLS, tile CLS, their mean and the 576-d concatenation."""

    region: torch.Tensor  # (1, E) region ViT CLS (192)
    tiles: torch.Tensor  # (g_h * g_w, D) row-major tile CLS (384)
    tiles_mean: torch.Tensor  # (1, D)
    grid_hw: tuple[int, int]
    tile_mask: torch.Tensor  # (g_h, g_w) bool, False = tile entirely in padding

    @property
    def concat(self) -> torch.Tensor:
        """``[tiles_mean, region]`` -> ``(1, D + E)`` (HIPT's ``features_mean256_cls4k``)."""
        return torch.cat([self.tiles_mean, self.region], dim=-1)


class HIPTComposer(nn.Module):
    """Stage-1 tile encoder + region ViT on one region image.

    Args:
        tile_encoder: frozen stage-1 ViT with its pre-processing (:class:`TileEncoder`).
        region_vit: the stage-2 region ViT (None: only tile embeddings).
        tile_size: tile side in pixels (256).
        batch_size: tiles per stage-1 forward (HIPT: 256 = one 4096 region).
        pad_mode: how sides that are not multiples of ``tile_size`` are handled: ``"pad"`` (white) or ``"crop"``.
        mask_padding: hide tiles that lie entirely in the padding from the region ViT's attention.
    """

    def __init__(
        self,
        tile_encoder: TileEncoder,
        region_vit: RegionViT | None,
        *,
        tile_size: int = 256,
        batch_size: int = 256,
        pad_mode: PadMode = "pad",
        mask_padding: bool = True,
    ) -> None:
        super().__init__()
        self.tile_encoder = tile_encoder.eval()
        self.region_vit = region_vit.eval().requires_grad_(False) if region_vit is not None else None
        self.tile_size, self.batch_size = tile_size, batch_size
        self.pad_mode: PadMode = pad_mode
        self.mask_padding = mask_padding

    @property
    def device(self) -> torch.device:
        return self.tile_encoder.mean.device

    def tile(self, image: Any) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
        """Fit and tile: ``(tiles (N, 3, t, t), (g_h, g_w), tissue mask (g_h, g_w))``."""
        img = as_image_tensor(image)
        h, w = img.shape[-2:]
        fitted = fit_region(img, self.tile_size, self.pad_mode, fill=1.0)
        tiles, grid = tile_region(fitted, self.tile_size)
        rows = torch.arange(grid[0])[:, None] * self.tile_size
        cols = torch.arange(grid[1])[None, :] * self.tile_size
        # a tile is padding only when it starts beyond the original image (pad mode adds bottom/right)
        mask = (rows < h) & (cols < w) if self.pad_mode == "pad" else torch.ones(grid, dtype=torch.bool)
        return tiles, grid, mask

    @torch.no_grad()
    def encode_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        """``(N, 3, t, t)`` in [0, 1] -> ``(N, D)`` float32, in mini-batches of ``batch_size``."""
        out = [self.tile_encoder(chunk.to(self.device)).float() for chunk in tiles.split(self.batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def forward(self, image: Any) -> HIPTOutput:
        tiles, grid, mask = self.tile(image)
        emb = self.encode_tiles(tiles)  # (N, D) row-major
        if self.region_vit is not None:
            region_grid = sequence_to_grid(emb, grid)[None]  # (1, D, g_h, g_w)
            key_mask = mask[None].to(self.device) if self.mask_padding and not bool(mask.all()) else None
            region = self.region_vit(region_grid.to(self.device), key_mask).float()  # (1, E)
        else:
            region = emb.new_zeros(1, 0)
        return HIPTOutput(region=region.cpu(), tiles=emb.cpu(), tiles_mean=emb.mean(0, keepdim=True).cpu(),
                          grid_hw=grid, tile_mask=mask)  # fmt: skip


def load_hipt(
    pretrained_weights: str | Path | None,
    region_weights: str | Path | None,
    *,
    tile_size: int = 256,
    input_size: int | None = None,
    normalization: str = "auto",
    checkpoint_key: str = "teacher",
    region_kwargs: dict[str, Any] | None = None,
    fallback_encoder: dict[str, Any] | None = None,
    batch_size: int = 256,
    pad_mode: PadMode = "pad",
    device: str | torch.device = "cpu",
) -> HIPTComposer:
    """Build the composer from the stage-1 and stage-2 weight files (None = random, with a warning).

    Without ``region_weights`` the random region ViT takes the stage-1 width as input and ``region_kwargs`` as its
    size (e.g. a tiny CI model ``{"depth": 2, "embed_dim": 32, "num_heads": 2, "pos_grid": 3}``). With
    ``region_weights`` the size is read from the file (heads from the training run's ``config.yaml`` beside it, else
    ``region_kwargs["num_heads"]``, else width / 32); shapes in ``region_kwargs`` never override the file.
    """
    import logging

    from dino_lib.models.loading import extract_state_dict
    from dino_lib.utils.io import safe_torch_load

    encoder = load_tile_encoder(pretrained_weights, checkpoint_key=checkpoint_key, normalization=normalization,
                                input_size=input_size, fallback=fallback_encoder)  # fmt: skip
    kwargs: dict[str, Any] = {"input_dim": encoder.embed_dim, **(region_kwargs or {})}
    if region_weights is not None:
        state, _ = extract_state_dict(safe_torch_load(region_weights), checkpoint_key, str(region_weights))
        kwargs.update(_region_kwargs_from_state(state, Path(region_weights).parent / "config.yaml", kwargs))
        if kwargs["input_dim"] != encoder.embed_dim:
            raise ValueError(
                f"{region_weights}: region ViT expects {kwargs['input_dim']}-d tile embeddings but the stage-1 encoder "
                f"gives {encoder.embed_dim}-d; use the stage-1 weights the region tensors were extracted with"
            )
    else:
        logging.getLogger(__name__).warning("region_weights is None: using a RANDOM region ViT %s", kwargs)
    region = build_region_vit("vit4k_xs", **kwargs)
    if region_weights is not None:
        load_region_vit(region, region_weights, checkpoint_key=checkpoint_key)
    composer = HIPTComposer(encoder, region, tile_size=tile_size, batch_size=batch_size, pad_mode=pad_mode)
    return composer.to(device)


def _region_kwargs_from_state(
    state: dict[str, torch.Tensor], run_config: Path, given: dict[str, Any]
) -> dict[str, Any]:
    """Region ViT size from its weights; heads from the run's ``config.yaml``, else ``given``, else width / 32."""
    if "phi.0.weight" not in state:
        raise ValueError("region weights have no 'phi.0.weight': not a region ViT (vit4k_xs) state dict")
    embed, input_dim = state["phi.0.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    side = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    heads = int(given.get("num_heads") or max(1, embed // 32))
    if run_config.is_file():
        import yaml

        region = (yaml.safe_load(run_config.read_text()) or {}).get("region") or {}
        heads = int(region.get("num_heads") or heads)
    return {"input_dim": input_dim, "embed_dim": embed, "depth": depth, "num_heads": heads, "pos_grid": side}
