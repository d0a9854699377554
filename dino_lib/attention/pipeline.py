"""The attention-map pipeline shared by the notebook and ``python -m dino_lib.attention`` (docs/attention.md).

``load_model`` builds the ViT and loads local weights (never downloads; a missing file is an error);
``compute_image_maps`` pre-processes images and extracts maps in batches of equal-size inputs; ``run_attention``
computes everything a run shows (maps, masks, patch-PCA colours, the video's grid maps) and writes the data files:
``config.yaml`` and, per image, the reference files and ``pca_rgb.png``. The figures and the video are drawn from
the returned :class:`AttentionRun` by :func:`dino_lib.viz.attention_run.write_run_figures`; :func:`write_summary`
then writes ``summary.json``.
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
from dino_lib.attention.patch_pca import PatchPCA, grid_to_picture, image_patch_pca
from dino_lib.attention.preprocess import Geometry, list_images, preprocess
from dino_lib.attention.render import save_reference_pngs
from dino_lib.attention.threshold import mass_threshold, to_image_size
from dino_lib.attention.video import VideoAttention, video_attention
from dino_lib.runtime import autocast_dtype, resolve_device, resolve_precision
from dino_lib.utils.io import atomic_write_text, write_png

__all__ = [
    "AttentionRun",
    "PatchPCAImages",
    "ImageAttention",
    "resolve_device",
    "load_model",
    "compute_image_maps",
    "select_images",
    "resolve_video_input",
    "run_attention",
    "write_patch_pca",
    "write_summary",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PatchPCAImages:
    """Patch-PCA colours of a run's images: the PCA, the pictures it covers, their names."""

    pca: PatchPCA
    pictures: list[np.ndarray]
    names: list[str]


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

    def masks(self, threshold: float, layer_pos: int = 0) -> torch.Tensor:
        """``(heads, H, W)`` attention-mass masks of one layer at picture size (nearest up-sampling)."""
        return to_image_size(mass_threshold(self.maps[layer_pos], threshold), self.geometry)


@dataclasses.dataclass
class AttentionRun:
    """What :func:`run_attention` computed; the figures and the video are drawn from it.

    Attributes:
        cfg: the parameters.
        model: the model, on its device.
        results: the maps of every image (first layer: ``cfg.layer``).
        dtype: the autocast dtype of the forward passes.
        summary: what ``summary.json`` will hold (images now; ``patch_pca`` and ``video`` once written).
        pca: the patch-PCA colours, the pictures they cover and their names (``cfg.patch_pca``), else ``None``.
        video: the grid maps of ``cfg.video_input``, else ``None``.
    """

    cfg: AttentionConfig
    model: nn.Module
    results: list[ImageAttention]
    dtype: torch.dtype | None
    summary: dict[str, Any]
    pca: PatchPCAImages | None = None
    video: VideoAttention | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)


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


def write_patch_pca(cfg: AttentionConfig, model: nn.Module, results: Sequence[ImageAttention]) -> PatchPCAImages:
    """PCA colours of the patch features of every image; writes ``<image>/pca_rgb.png`` and returns the arrays."""
    # the pictures are already resized (and cropped in "reference" mode): pre-processing them again is exact
    pca, pictures, geometries = image_patch_pca(
        model, [r.picture for r in results], patch_size=cfg.patch_size, image_size=None, mode=cfg.preprocessing
    )
    out = Path(cfg.output_dir)
    for res, rgb, geometry in zip(results, pca.rgb, geometries):
        write_png(out / res.name / "pca_rgb.png", (grid_to_picture(rgb, geometry) * 255).round().astype(np.uint8))
    return PatchPCAImages(pca, list(pictures), [r.name for r in results])


def _image_maps_of(cfg: AttentionConfig, model: nn.Module, dtype: torch.dtype | None) -> list[ImageAttention]:
    """Maps of ``cfg.layer`` for the selected images of ``cfg.image_dir``."""
    from dino_lib.data.samples import resolve_data_path

    files = select_images(list_images(resolve_data_path(cfg.image_dir)), cfg.max_images)
    return compute_image_maps(
        model, files, patch_size=cfg.patch_size, image_size=cfg.image_size_arg, mode=cfg.preprocessing,
        layers=(cfg.layer,), query=cfg.query, batch_size=cfg.batch_size, dtype=dtype,
    )  # fmt: skip


def _write_reference_files(run: AttentionRun) -> None:
    """Per image: ``img.png``, ``attn-head{j}.png`` and (with a threshold) ``mask_th{t}_head{j}.png``."""
    cfg = run.cfg
    for res in run.results:
        masks = res.masks(cfg.threshold) if cfg.threshold is not None else None
        folder = run.output_dir / res.name
        save_reference_pngs(folder, res.picture, res.upsampled(), masks, threshold=cfg.threshold)
        run.summary["images"].append({"name": res.name, "grid_hw": list(res.geometry.grid_hw), "folder": str(folder)})


def _video_maps(cfg: AttentionConfig, model: nn.Module, dtype: torch.dtype | None) -> VideoAttention:
    source = resolve_video_input(cfg.video_input)  # type: ignore[arg-type]
    return video_attention(
        model, source, patch_size=cfg.patch_size, fps=cfg.video_fps, image_size=cfg.video_size,
        mode=cfg.preprocessing, layer=cfg.layer, threshold=cfg.video_threshold, batch_size=cfg.batch_size,
        max_frames=cfg.video_max_frames, dtype=dtype,
    )  # fmt: skip


def run_attention(
    cfg: AttentionConfig, model: nn.Module | None = None, results: Sequence[ImageAttention] | None = None
) -> AttentionRun:
    """Compute everything the notebook and the CLI show and write the data files (``config.yaml``, per image the
    reference PNGs and ``pca_rgb.png``); figures, the video and ``summary.json`` come after (module docstring).

    Args:
        cfg: the parameters.
        model: an already loaded model (default: :func:`load_model`).
        results: maps already computed by :func:`compute_image_maps` whose first layer is ``cfg.layer`` (the
            notebook passes its own, so the forward passes are not repeated).
    """
    from dino_lib.config import save_run_config

    device = resolve_device(cfg.device)
    model = (model or load_model(cfg)).to(device)
    dtype = autocast_dtype(resolve_precision(cfg.precision, device))
    results = list(results) if results is not None else _image_maps_of(cfg, model, dtype)
    run = AttentionRun(cfg, model, results, dtype, {"images": [], "video": None})
    run.output_dir.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, run.output_dir)  # the inputs are read and the model ran: outputs from here on
    _write_reference_files(run)
    if cfg.patch_pca and results:
        run.pca = write_patch_pca(cfg, model, results)
    if cfg.video_input:
        run.video = _video_maps(cfg, model, dtype)
    return run


def write_summary(run: AttentionRun) -> dict[str, Any]:
    """Write ``summary.json`` (the run's images, and the patch-PCA figure and video once written); returns it."""
    atomic_write_text(run.output_dir / "summary.json", json.dumps(run.summary, indent=2))
    return run.summary
