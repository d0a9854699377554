"""How much of a head's attention lands on the object: a number next to the pictures.

The paper shows that the last block's CLS attention of a trained DINO ViT concentrates on the object (Caron et al.,
2021, Fig. 1 and 3; its Table 8 scores thresholded maps against segmentation masks). Without masks, images of light
strokes on a dark background (the demo's handwritten digits) give their own: the strokes are the bright pixels. The
share of attention mass on them is compared with what uniform attention would put there (the strokes' share of the
picture) and with the same architecture at random weights.
"""

from __future__ import annotations

import numpy as np

from dino_lib.attention.pipeline import ImageAttention

__all__ = ["bright_foreground", "mass_on_foreground", "mean_mass_on_bright_foreground", "foreground_share_by_block"]


def bright_foreground(picture: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels brighter than ``fraction`` of the picture's brightest grey level (HWC
    uint8 or float pictures); meaningful for light-on-dark images such as scanned digits."""
    grey = np.asarray(picture, dtype=np.float64)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    top = grey.max()
    if top <= grey.min():
        raise ValueError("the picture is uniform: it has no bright foreground")
    return grey > grey.min() + fraction * (top - grey.min())


def mass_on_foreground(result: ImageAttention, foreground: np.ndarray, layer_pos: int = 0) -> np.ndarray:
    """``(heads,)`` share of each head's attention mass on ``foreground`` (an ``(H, W)`` mask of the picture).

    The patch-grid maps are brought to picture size by nearest up-sampling, so every patch keeps its mass spread over
    its own pixels; each head is normalised to a total of 1 over the picture.
    """
    maps = result.upsampled(layer_pos, mode="nearest").float().numpy()  # (heads, H, W)
    if maps.shape[1:] != foreground.shape:
        raise ValueError(f"foreground mask {foreground.shape} does not match the maps {maps.shape[1:]}")
    total = maps.sum(axis=(1, 2))
    return (maps * foreground[None]).sum(axis=(1, 2)) / np.maximum(total, 1e-12)


def mean_mass_on_bright_foreground(
    results: list[ImageAttention], fraction: float = 0.5, layer_pos: int = 0
) -> dict[str, float]:
    """Mean over images and heads of the attention share on the bright pixels (maps of ``result.layers[layer_pos]``),
    and the bright pixels' own share (what uniform attention would give)."""
    shares, uniform = [], []
    for result in results:
        mask = bright_foreground(result.picture, fraction)
        shares.append(mass_on_foreground(result, mask, layer_pos).mean())
        uniform.append(mask.mean())
    return {"attention_on_foreground": float(np.mean(shares)), "uniform": float(np.mean(uniform))}


def foreground_share_by_block(
    results: list[ImageAttention], baseline: list[ImageAttention], fraction: float = 0.5
) -> list[dict[str, float]]:
    """One row per block of ``results`` (maps of several blocks of the same images): the attention share on the
    bright pixels for the model, for ``baseline`` (the same images and blocks, e.g. random weights) and for uniform
    attention. In a small ViT trained on digits the block whose CLS attention follows the strokes need not be the
    last one, so every block is scored.

    Raises:
        ValueError: the two lists do not hold the same images and blocks.
    """
    if [(r.name, r.layers) for r in results] != [(r.name, r.layers) for r in baseline]:
        raise ValueError("results and baseline must hold maps of the same images and blocks")
    rows = []
    for pos, block in enumerate(results[0].layers if results else []):
        ours = mean_mass_on_bright_foreground(results, fraction, pos)
        base = mean_mass_on_bright_foreground(baseline, fraction, pos)
        rows.append(
            {
                "block": block,
                "model": ours["attention_on_foreground"],
                "baseline": base["attention_on_foreground"],
                "uniform": ours["uniform"],
            }
        )
    return rows
