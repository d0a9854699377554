"""Parameters of ``python -m dino_lib.features`` for image features (``task: images``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from dino_lib.config import ConfigError, param
from dino_lib.runtime.precision import PRECISION_CHOICES

__all__ = ["AvgpoolLayout", "FeatureConfig", "interleaved_layout"]

AvgpoolLayout = Literal["auto", "interleaved", "appended"]


def interleaved_layout(avgpool_layout: AvgpoolLayout, n_last_blocks: int) -> bool:
    """Whether avgpool features use the reference's per-channel interleaving (``auto``: only for one block)."""
    if avgpool_layout == "auto":
        return n_last_blocks == 1
    return avgpool_layout == "interleaved"


@dataclasses.dataclass
class FeatureConfig:
    """Extract frozen features of labelled image folders (``data_path/<split>/<class>/*``) to ``output_dir``."""

    task: Literal["images"] = param("images", help="images here; 'regions' selects HIPT region extraction instead")
    data_path: str = param("sample:labelled", help="folder with <split>/<class>/ sub-folders (or sample:labelled)")
    splits: list[str] = param(default_factory=lambda: ["train", "val"], help="split sub-folders to extract")
    output_dir: str = "runs/features"
    device: str = "auto"
    arch: str = "vit_small"
    patch_size: int = param(16, ge=1)
    depth: int | None = param(None, ge=1)
    pretrained_weights: str | None = None
    checkpoint_key: str = "teacher"
    batch_size_per_gpu: int = param(128, ge=1)
    num_workers: int = param(10, ge=0)
    resize: int = param(256, ge=1)
    crop: int = param(224, ge=1)
    precision: str = param("auto", choices=PRECISION_CHOICES, help="auto: bf16 where native, else fp32")
    n_last_blocks: int = param(1, ge=1)
    avgpool_patchtokens: bool = False
    avgpool_layout: AvgpoolLayout = "auto"
    cache_dir: str | None = None

    def validate(self) -> None:
        if self.crop > self.resize:
            raise ConfigError(f"crop ({self.crop}) must not exceed resize ({self.resize})")
        if not self.splits:
            raise ConfigError("splits: give at least one split folder name, e.g. [train, val]")

    @property
    def interleave(self) -> bool:
        return interleaved_layout(self.avgpool_layout, self.n_last_blocks)
