"""The attention-map pipeline shared by the notebook and ``python -m dino_lib.attention`` (docs/attention.md).

``load_model`` builds the ViT and loads local weights (never downloads; a missing file is an error);
``compute_image_maps`` pre-processes images and extracts maps in batches of equal-size inputs; ``run_attention``
writes, per image, the reference files plus head-grid and mask figures, and the attention video.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dino_lib.attention.config import AttentionConfig
from dino_lib.attention.extract import attention_maps
from dino_lib.attention.preprocess import Geometry, list_images, preprocess
from dino_lib.attention.threshold import mass_threshold, to_image_size
from dino_lib.runtime import autocast_dtype, resolve_device, resolve_precision

__all__ = [
    "ImageAttention",
    "resolve_device",
    "load_model",
    "compute_image_maps",
    "select_images",
    "resolve_video_input",
    "run_attention",
    "write_patch_pca",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageAttention:
    """Maps of one image: ``maps`` ``(L, heads, h, w)`` on the patch grid, the picture they cover, the geometry."""

    name: str
    picture: np.ndarray
    maps: torch.Tensor
    geometry: Geometry
    layers: list[int]

    def upsampled(self, layer_pos: int = 0, mode: str = "nearest") -> torch.Tensor:
        """``(heads, H, W)`` maps of one layer at picture size."""
        return to_image_size(self.maps[layer_pos], self.geometry, mode=mode)


def load_model(cfg: AttentionConfig) -> nn.Module:
    """Build ``cfg.arch`` and load ``cfg.pretrained_weights`` strictly (or warn loudly and keep random weights)."""
    from dino_lib.models import BackboneSpec, build_and_load

    # timm ViTs take any input size; random initialisation is seeded by cfg.seed.
    extra = {"dynamic_img_size": True} if cfg.arch.startswith("timm:") else {}
    model, _ = build_and_load(BackboneSpec.from_config(cfg, **extra), seed=cfg.seed)
    return model.eval()


def compute_image_maps(
    model: nn.Module,
    images: Sequence[str | Path | np.ndarray],
    *,
    patch_size: int,
    image_size: int | tuple[int, int] | None,
    mode: str = "pad",
    layers: Sequence[int] = (-1,),
    query: str = "cls",
    batch_size: int = 8,
    dtype: torch.dtype | None = None,
    names: Sequence[str] | None = None,
) -> list[ImageAttention]:
    """Maps of every image; images of equal input size share a forward pass (batched)."""
    device = next(model.parameters()).device
    prepared = [preprocess(img, patch_size=patch_size, image_size=image_size, mode=mode) for img in images]
    names = (
        list(names)
        if names is not None
        else [Path(str(i)).stem if not isinstance(i, np.ndarray) else f"image{k}" for k, i in enumerate(images)]
    )
    results: list[ImageAttention | None] = [None] * len(prepared)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for k, (x, _, _) in enumerate(prepared):
        by_size.setdefault(tuple(x.shape), []).append(k)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            x = torch.stack([prepared[k][0] for k in chunk]).to(device)  # (B, 3, H, W)
            out = attention_maps(model, x, layers=layers, query=query, dtype=dtype)
            for row, k in enumerate(chunk):
                results[k] = ImageAttention(names[k], prepared[k][1], out.maps[row].cpu(), prepared[k][2], out.layers)
    return [r for r in results if r is not None]


def select_images(files: Sequence[Path], max_images: int | None) -> list[Path]:
    """``max_images`` files spread evenly over the sorted list (so class sub-folders are all represented)."""
    if max_images is None or max_images >= len(files):
        return list(files)
    picks = np.linspace(0, len(files) - 1, max_images).round().astype(int)
    return [files[i] for i in picks]


def resolve_video_input(value: str) -> Path:
    """A video file, a folder of frames, or a driving DATAROOT (``<run>/image/*``: its first run's frames)."""
    from dino_lib.data.samples import resolve_data_path

    path = resolve_data_path(value)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"video_input {value!r} -> {path} does not exist; pass a video file or frame folder")
    runs = sorted(p / "image" for p in path.iterdir() if (p / "image").is_dir())
    return runs[0] if runs else path


def write_patch_pca(cfg: AttentionConfig, model: nn.Module, results: Sequence[ImageAttention], out: Path) -> str:
    """PCA colours of the patch features of every image: ``patch_pca.png`` and ``<image>/pca_rgb.png``."""
    import matplotlib.pyplot as plt

    from dino_lib.attention.patch_pca import grid_to_picture, image_patch_pca
    from dino_lib.utils.io import atomic_write_bytes
    from dino_lib.viz.attention import png_bytes, save_figure
    from dino_lib.viz.pca import patch_pca_figure

    # the pictures are already resized (and cropped in "reference" mode): pre-processing them again is exact
    pca, pictures, geometries = image_patch_pca(
        model, [r.picture for r in results], patch_size=cfg.patch_size, image_size=None, mode=cfg.preprocessing
    )
    for res, rgb, geometry in zip(results, pca.rgb, geometries):
        colours = (grid_to_picture(rgb, geometry) * 255).round().astype(np.uint8)
        atomic_write_bytes(out / res.name / "pca_rgb.png", png_bytes(colours))
    explained = ", ".join(f"{v:.2f}" for v in pca.explained)
    fig = patch_pca_figure(
        pictures, pca.rgb, pca.first, names=[r.name for r in results], title=f"variance explained: {explained}"
    )
    path = save_figure(fig, out / "patch_pca.png")
    plt.close(fig)
    return str(path)


def run_attention(
    cfg: AttentionConfig, model: nn.Module | None = None, results: Sequence[ImageAttention] | None = None
) -> dict[str, Any]:
    """Compute and write everything the notebook and the CLI produce; returns a summary (also ``summary.json``).

    Args:
        cfg: the parameters.
        model: an already loaded model (default: :func:`load_model`).
        results: maps already computed by :func:`compute_image_maps` whose first layer is ``cfg.layer`` (the
            notebook passes its own, so the forward passes are not repeated).
    """
    import matplotlib.pyplot as plt

    from dino_lib.config import save_run_config
    from dino_lib.data.samples import resolve_data_path
    from dino_lib.utils.io import atomic_write_text
    from dino_lib.viz.attention import head_grid_figure, mask_figure, save_figure, save_reference_pngs

    out = Path(cfg.output_dir)
    device = resolve_device(cfg.device)
    model = (model or load_model(cfg)).to(device)
    dtype = autocast_dtype(resolve_precision(cfg.precision, device))
    if results is None:
        files = select_images(list_images(resolve_data_path(cfg.image_dir)), cfg.max_images)
        results = compute_image_maps(
            model,
            files,
            patch_size=cfg.patch_size,
            image_size=cfg.image_size_arg,
            mode=cfg.preprocessing,
            layers=(cfg.layer,),
            query=cfg.query,
            batch_size=cfg.batch_size,
            dtype=dtype,
        )
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, out)  # the inputs are read and the model ran: outputs from here on
    summary: dict[str, Any] = {"images": [], "video": None}
    for res in results:
        maps = res.upsampled()  # (heads, H, W)
        masks = None
        if cfg.threshold is not None:
            masks = to_image_size(mass_threshold(res.maps[0], cfg.threshold), res.geometry)
        folder = out / res.name
        save_reference_pngs(folder, res.picture, maps, masks, threshold=cfg.threshold)
        fig = head_grid_figure(res.picture, res.upsampled(mode="bilinear"), normalization=cfg.normalization, alpha=0.6)
        save_figure(fig, out / f"{res.name}_heads.png")
        plt.close(fig)
        if masks is not None:
            fig = mask_figure(res.picture, masks, threshold=cfg.threshold)
            save_figure(fig, out / f"{res.name}_masks.png")
            plt.close(fig)
        summary["images"].append({"name": res.name, "grid_hw": list(res.geometry.grid_hw), "folder": str(folder)})
    if cfg.patch_pca and results:
        summary["patch_pca"] = write_patch_pca(cfg, model, results, out)
    if cfg.video_input:
        from dino_lib.attention.video import attention_video

        video = attention_video(
            model,
            resolve_video_input(cfg.video_input),
            out / f"video.{cfg.video_format}",
            patch_size=cfg.patch_size,
            fps=cfg.video_fps,
            image_size=cfg.video_size,
            mode=cfg.preprocessing,
            layer=cfg.layer,
            threshold=cfg.video_threshold,
            batch_size=cfg.batch_size,
            max_frames=cfg.video_max_frames,
            dtype=dtype,
        )
        summary["video"] = {"path": str(video.path), "frames": video.frames, "fps": video.fps}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
