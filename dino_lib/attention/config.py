"""Parameters of the attention-map pipeline (notebook ``attention_maps`` and ``python -m dino_lib.attention``).

Names follow the reference scripts ``visualize_attention.py`` / ``video_generation.py`` where one exists (``arch``,
``patch_size``, ``pretrained_weights``, ``checkpoint_key``, ``image_size``, ``output_dir``, ``threshold``).
Data paths accept ``sample:<set>`` (see :func:`dino_lib.data.samples.resolve_data_path`).
"""

from __future__ import annotations

import dataclasses

from dino_lib.config import ConfigError, param
from dino_lib.runtime.precision import PRECISION_CHOICES

__all__ = ["AttentionConfig"]


@dataclasses.dataclass
class AttentionConfig:
    """Typed parameters; defaults are the tiny CPU values (``params/attention_maps/ci.yaml``)."""

    # model
    arch: str = param("vit_tiny", help="vit_tiny|vit_small|vit_base, or timm:<name> (a timm ViT)")
    patch_size: int = param(16, gt=0, help="patch size of the ViT (8 or 16 for DINO weights)")
    depth: int | None = param(None, gt=0, help="number of blocks; null = the architecture's (12)")
    pretrained_weights: str | None = param(None, help="local checkpoint; null = random weights (with a warning)")
    checkpoint_key: str = param("teacher", help="teacher or student inside a full DINO checkpoint")
    seed: int = param(0, help="seed of the random initialisation when no weights are given")
    # images
    image_dir: str = param("sample:images", help="folder (searched recursively) or a single image")
    max_images: int | None = param(4, gt=0, help="use the first N images (sorted); null = all")
    image_size: list[int] | None = param(
        default_factory=lambda: [224], help="[S] = shorter side, [H, W] = exact size (reference: [480, 480])"
    )
    preprocessing: str = param("pad", choices=["pad", "reference"], help="pad to whole patches, or top-left crop")
    # maps
    layer: int = param(-1, help="block whose attention is shown (negative counts from the end)")
    query: str = param("cls", choices=["cls", "mean"], help="CLS query (reference) or mean over patch queries")
    threshold: float | None = param(0.6, ge=0.0, le=1.0, help="attention-mass fraction kept by masks; null = none")
    normalization: str = param("per_map", choices=["per_map", "shared"], help="colour scale of map figures")
    precision: str = param("auto", choices=PRECISION_CHOICES, help="forward precision (auto: bf16 where native)")
    batch_size: int = param(8, gt=0, help="images (or frames) per forward pass")
    patch_pca: bool = param(True, help="also colour the patch features by PCA (DINOv2's figure): patch_pca.png")
    # video
    video_input: str | None = param(
        "sample:driving", help="video file, folder of frames, or a driving DATAROOT (its first run); null = no video"
    )
    video_fps: float | None = param(None, gt=0.0, help="output fps; null = the source's (30 for frame folders)")
    video_size: int | None = param(None, gt=0, help="shorter side of video frames; null = unchanged")
    video_threshold: float | None = param(None, ge=0.0, le=1.0, help="mass threshold applied to the video")
    video_max_frames: int | None = param(None, gt=0, help="stop after N frames; null = all")
    video_format: str = param("mp4", choices=["mp4", "gif"], help="output container")
    # run
    output_dir: str = param("runs/attention_maps", help="where figures, PNGs and the video are written")
    device: str = param("auto", help="auto | cpu | cuda | cuda:N")

    def validate(self) -> None:
        if self.image_size is not None and len(self.image_size) not in (1, 2):
            raise ConfigError(f"image_size must be [S] or [H, W], got {self.image_size}")
        if self.preprocessing == "pad" and self.image_size is not None and len(self.image_size) == 2:
            raise ConfigError(
                "preprocessing 'pad' keeps the aspect ratio: give image_size as [S] (shorter side), "
                "or use preprocessing: reference for the exact [H, W] resize of the reference script"
            )
        if self.arch.startswith("timm:") is False and not self.arch.startswith("vit_"):
            raise ConfigError(f"arch {self.arch!r}: attention maps need a ViT (vit_tiny/small/base or timm:vit_*)")

    @property
    def image_size_arg(self) -> int | tuple[int, int] | None:
        """``image_size`` in the form :func:`dino_lib.attention.preprocess.preprocess` takes."""
        if self.image_size is None:
            return None
        return self.image_size[0] if len(self.image_size) == 1 else (self.image_size[0], self.image_size[1])
