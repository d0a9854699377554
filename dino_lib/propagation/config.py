"""Configuration of a propagation run (the notebook ``propagate_segmentation`` and ``python -m dino_lib.propagation``).

Parameter names follow the reference scripts where one exists (``arch``, ``patch_size``, ``pretrained_weights``,
``checkpoint_key``, ``output_dir``, ``data_path``, ``n_last_frames``, ``size_mask_neighborhood``, ``topk``,
``refresh_label_interval``); the temperature, hard-coded to 0.1 in the reference, is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dino_lib.config import ConfigError, param
from dino_lib.runtime.precision import PRECISION_CHOICES

__all__ = ["PropagationConfig"]


@dataclass
class PropagationConfig:
    """All parameters of a propagation run; see docs/propagation.md for each one."""

    # data
    data_path: str = param("sample:driving", help="driving DATAROOT (folder of runs) or DAVIS root; sample:<name> ok")
    dataset: str = param("driving", choices=["driving", "davis"], help="layout and label semantics")
    runs: list[str] | None = param(None, help="runs / DAVIS videos to process (default: all, or the DAVIS split)")
    davis_split: str = "val"
    davis_resolution: str = "480p"
    max_frames: int | None = param(None, ge=1, help="process only the first N frames of each run (quick looks)")
    output_dir: str = "runs/propagate_segmentation"
    # protocol
    protocol: str = param("default", choices=["default", "davis_parity"], help="davis_parity = reference DAVIS")
    keyframe_policy: str = param(
        "auto", choices=["auto", "first", "chunks", "continuous"], help="auto: chunks for driving runs, first for DAVIS"
    )
    refresh_label_interval: int = param(50, ge=1, help="frames per chunk / between keyframes")
    max_anchors: int | None = param(None, ge=1, help="continuous policy: keep only the last N keyframes as anchors")
    n_last_frames: int = param(7, ge=0)
    size_mask_neighborhood: int = param(12, ge=0, help="window half-width r in cells; 0 = no window")
    window_shape: str = param("square", choices=["square", "circle"])
    topk: int = param(5, ge=1)
    temperature: float = param(0.1, gt=0)
    queue_labels: str = param("soft", choices=["soft", "hard"])
    short_side: int | None = param(None, ge=16, help="default protocol: resize frames to this short side first")
    label_downsample: str = param("centre", choices=["centre", "area"])
    ignore_id: int = param(255, ge=0, le=255)
    ignore_handling: str = param("zero_mass", choices=["zero_mass", "as_class"])
    num_classes: int | None = param(None, ge=1, help="driving: 27 by default; ids above are errors")
    # bad-input policies (docs/propagation.md, Bad input)
    unknown_ids: str = param("error", choices=["error", "ignore"])
    label_size_mismatch: str = param("error", choices=["error", "resize"])
    frame_size_mismatch: str = param("error", choices=["error", "resize"])
    rgb_labels: str = param("error", choices=["error", "palette"])
    # backbone
    arch: str = param(
        "vit_small",
        help="vit_tiny|vit_small|vit_base[_patchN], mae_vit_base_patch16, timm:<name>, torchvision CNN name",
    )
    patch_size: int | None = param(16, ge=1)
    pretrained_weights: str | None = None
    checkpoint_key: str = "teacher"
    layer: int = param(-1, help="block whose output is used (-1 = last)")
    cnn_stage: str = "layer3"
    mae_pos_embed: str = param("sincos", choices=["sincos", "interpolate"])
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    # execution
    device: str = "auto"
    precision: str = param(
        "auto",
        choices=PRECISION_CHOICES,
        help="backbone and window scores (bf16 scores pre-select candidates, re-scored in fp32); parity mode: fp32",
    )
    batch_size: int = param(8, ge=1, help="frames per feature-extraction batch")
    feature_cache: bool = True
    feature_cache_dir: str | None = param(None, help="default: <output_dir>/.feature_cache")
    cache_dtype: str = param("float16", choices=["float16", "float32"])
    tile_size: int = param(8, ge=1)
    memory_budget_mb: float = param(32.0, gt=0, help="per-chunk score temporaries; small chunks reuse memory")
    save_probs: bool = False
    resume: bool = True
    overwrite: bool = False

    def validate(self) -> None:
        if self.protocol == "davis_parity":
            if self.dataset != "davis":
                raise ConfigError("protocol: davis_parity reproduces the DAVIS reference; it needs dataset: davis")
            if self.precision not in ("auto", "fp32"):
                raise ConfigError(
                    "protocol: davis_parity computes features and affinities in float32; set precision: auto or fp32"
                )
            if self.resolved_policy != "first":
                raise ConfigError("protocol: davis_parity uses keyframe_policy first (the reference protocol)")

    @property
    def resolved_policy(self) -> Literal["first", "chunks", "continuous"]:
        if self.keyframe_policy == "auto":
            return "chunks" if self.dataset == "driving" else "first"
        return self.keyframe_policy  # type: ignore[return-value]

    @property
    def mode(self) -> Literal["semantic", "instance"]:
        return "semantic" if self.dataset == "driving" else "instance"
