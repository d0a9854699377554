"""Named input normalisations shared by training, extraction and inference.

Stage-1 DINO (and the HIPT patch encoder) is trained with ImageNet statistics, while HIPT's released inference code
normalises with 0.5/0.5 (HIPT issue #70). A run records its preset in ``config.yaml`` (``normalization``) so that
feature extraction applies the same one and refuses a contradicting setting.
"""

from __future__ import annotations

from dino_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["Stats", "NORMALIZATIONS"]

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

NORMALIZATIONS: dict[str, Stats] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "hipt": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
