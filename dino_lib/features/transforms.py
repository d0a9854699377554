"""Reference pre-processing for frozen-feature evaluation (as DINO's eval scripts).

* Evaluation transform (k-NN, linear validation, feature extraction): resize the shorter side to ``resize``
  (256) with bicubic interpolation, centre-crop ``crop`` (224), to tensor, ImageNet normalisation.
* Linear-probe training transform: RandomResizedCrop(``crop``) with torchvision defaults (scale 0.08-1, ratio
  3/4-4/3, bilinear), horizontal flip p = 0.5, to tensor, normalisation.

``resize``/``crop`` are parameters so that small images (monitoring on the sample data) can use e.g. 64/56; the
defaults are the reference values. :func:`describe_transform` gives a stable text used in feature-cache keys.
"""

from __future__ import annotations

from torchvision import transforms as T

from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["eval_transform", "linear_train_transform", "describe_transform"]


def eval_transform(
    resize: int = 256,
    crop: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> T.Compose:
    """Resize (shorter side, bicubic) -> centre crop -> tensor -> normalise (k-NN and probe validation)."""
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize}); the reference uses 256/224")
    return T.Compose(
        [
            T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def linear_train_transform(
    crop: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> T.Compose:
    """RandomResizedCrop (torchvision defaults, bilinear) -> flip -> tensor -> normalise (probe training)."""
    return T.Compose(
        [
            T.RandomResizedCrop(crop),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def describe_transform(transform: object) -> str:
    """A stable one-line description (torchvision's ``repr`` lists every step and its arguments)."""
    return " ".join(repr(transform).split())
