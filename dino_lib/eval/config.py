"""Typed parameters of ``python -m dino_lib.eval`` and ``notebooks/evaluate.ipynb`` (docs/evaluation.md).

Defaults are the reference's command-line defaults; parameter names follow the reference
flags (``arch``, ``patch_size``, ``pretrained_weights``, ``checkpoint_key``, ``batch_size_per_gpu``, ``nb_knn``,
``temperature``, ``n_last_blocks``, ``avgpool_patchtokens``, ``epochs``, ``lr``, ``val_freq``, ``num_labels``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from dino_lib.config import ConfigError, param
from dino_lib.features.config import AvgpoolLayout, interleaved_layout
from dino_lib.runtime.precision import PRECISION_CHOICES

__all__ = ["EvalConfig"]


@dataclasses.dataclass
class EvalConfig:
    """k-NN and linear-probe evaluation of a frozen backbone on a labelled folder (``train/``, ``val/``)."""

    # what to run and where
    task: Literal["knn", "linear", "both"] = param("both", help="k-NN, linear probe, or both")
    data_path: str = param("sample:labelled", help="folder with train/<class>/ and val/<class>/ (or sample:labelled)")
    output_dir: str = param("runs/evaluate", help="results, linear checkpoints and figures go here")
    device: str = param("auto", help="auto | cpu | cuda | cuda:N")
    seed: int = param(0, ge=0)
    # backbone
    arch: str = param("vit_small", help="vit_tiny|vit_small|vit_base, torchvision name, timm:<name>, or auto")
    patch_size: int = param(16, ge=1)
    depth: int | None = param(None, ge=1, help="ViT depth override (tiny test models); null = the arch's")
    pretrained_weights: str | None = param(None, help="local checkpoint; null = random weights (warning)")
    checkpoint_key: str = param("teacher", help="teacher or student in a full DINO checkpoint")
    # data loading and pre-processing (resize/crop: reference 256/224)
    batch_size_per_gpu: int = param(128, ge=1)
    num_workers: int = param(10, ge=0)
    resize: int = param(256, ge=1)
    crop: int = param(224, ge=1)
    precision: str = param(
        "auto",
        choices=PRECISION_CHOICES,
        help="feature extraction precision (auto: bf16 where native; reference: fp32)",
    )
    # k-NN
    nb_knn: list[int] = param(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = param(0.07, gt=0)
    cache_dir: str | None = param(None, help="feature cache folder (keyed by weights, transform, listing)")
    dump_features: str | None = param(None, help="write trainfeat.pth/testfeat.pth/... here")
    load_features: str | None = param(None, help="read the reference's four feature files from here")
    # linear probe
    n_last_blocks: int = param(4, ge=1)
    avgpool_patchtokens: bool = False
    avgpool_layout: AvgpoolLayout = param(
        "auto", help="auto = interleaved for n_last_blocks=1 (reference), appended otherwise"
    )
    epochs: int = param(100, ge=1)
    lr: float = param(0.001, gt=0)
    val_freq: int = param(1, ge=1)
    num_labels: int | None = param(None, ge=2, help="null = number of class folders")
    linear_mode: Literal["augmented", "cached"] = param(
        "augmented", help="augmented = reference (features recomputed on augmented images); cached = fast"
    )
    linear_weights: str | None = param(None, help="local linear weights: only validate them (reference --evaluate)")
    # notebook display
    gallery_queries: int = param(4, ge=0, help="query images in the nearest-neighbour gallery")
    gallery_k: int = param(5, ge=1)
    embedding_method: Literal["pca", "tsne"] = "pca"

    def validate(self) -> None:
        if self.crop > self.resize:
            raise ConfigError(f"crop ({self.crop}) must not exceed resize ({self.resize}); the reference uses 256/224")
        if not self.nb_knn or min(self.nb_knn) < 1:
            raise ConfigError(f"nb_knn: expected a non-empty list of k >= 1, found {self.nb_knn}")
        if self.avgpool_layout == "interleaved" and self.avgpool_patchtokens and self.n_last_blocks != 1:
            raise ConfigError("avgpool_layout: 'interleaved' exists only for n_last_blocks=1; use 'appended' or 'auto'")
        if self.arch == "auto" and not self.pretrained_weights:
            raise ConfigError("arch: 'auto' reads the architecture from pretrained_weights; set pretrained_weights")

    @property
    def interleave(self) -> bool:
        """Whether avgpool features use the reference's per-channel interleaving."""
        return interleaved_layout(self.avgpool_layout, self.n_last_blocks)
