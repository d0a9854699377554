"""Named input normalisations shared by training, extraction and inference.

Stage-1 DINO (and the HIPT patch encoder) is trained with ImageNet statistics, while HIPT's released inference code
normalises with 0.5/0.5 (HIPT issue #70). A run records its preset in ``config.yaml`` (``normalization``) so that
feature extraction applies the same one and refuses a contradicting setting.
"""

from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Stats", "NORMALIZATIONS"]

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NORMALIZATIONS: dict[str, Stats] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "hipt": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
