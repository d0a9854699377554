"""Self-attention maps of ViTs: extraction, mass thresholding, pre-processing geometry, video maps (docs/attention.md).

    from dino_lib.attention import attention_maps, mass_threshold, preprocess
    x, picture, geometry = preprocess("cat.jpg", patch_size=8, image_size=480)
    maps = attention_maps(model, x[None]).maps[0, 0]        # (heads, h, w), CLS query, last block
    masks = mass_threshold(maps, 0.6)                        # (heads, h, w) bool, reference semantics

Command-line twin: ``python -m dino_lib.attention --config FILE [key=value ...]``.
"""

from dino_lib.attention.config import AttentionConfig
from dino_lib.attention.explorer import MapExplorer
from dino_lib.attention.extract import AttentionMaps, attention_maps, num_prefix_tokens, selfattention, vit_tokens
from dino_lib.attention.foreground import (
    bright_foreground,
    foreground_share_by_block,
    mass_on_foreground,
    mean_mass_on_bright_foreground,
)
from dino_lib.attention.hooks import AttentionCapture, capture_attention
from dino_lib.attention.pipeline import (
    AttentionRun,
    ImageAttention,
    compute_image_maps,
    load_model,
    resolve_device,
    resolve_video_input,
    run_attention,
    write_summary,
)
from dino_lib.attention.preprocess import Geometry, denormalize, list_images, load_image, preprocess
from dino_lib.attention.threshold import (
    absolute_mask,
    kept_mass,
    mass_threshold,
    to_image_size,
    top_fraction_mask,
    upsample,
)
from dino_lib.attention.tracking import AttentionSnapshot
from dino_lib.attention.video import (
    VideoAttention,
    VideoResult,
    attention_frames,
    video_attention,
    video_fps,
    video_frames,
)

# HIPT hierarchical heat maps are re-exported below.

__all__ = [
    "bright_foreground",
    "mass_on_foreground",
    "mean_mass_on_bright_foreground",
    "foreground_share_by_block",
    "AttentionCapture",
    "AttentionConfig",
    "AttentionMaps",
    "AttentionRun",
    "AttentionSnapshot",
    "Geometry",
    "ImageAttention",
    "MapExplorer",
    "VideoAttention",
    "VideoResult",
    "absolute_mask",
    "attention_frames",
    "attention_maps",
    "capture_attention",
    "compute_image_maps",
    "denormalize",
    "kept_mass",
    "list_images",
    "load_image",
    "load_model",
    "mass_threshold",
    "num_prefix_tokens",
    "preprocess",
    "resolve_device",
    "resolve_video_input",
    "run_attention",
    "selfattention",
    "to_image_size",
    "top_fraction_mask",
    "upsample",
    "video_attention",
    "video_fps",
    "video_frames",
    "vit_tokens",
    "write_summary",
]
