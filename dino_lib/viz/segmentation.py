"""Segmentation figures: GT | prediction overlays with a class legend, error maps, confidence maps, failure galleries.

Functions return arrays (for videos and widgets) or matplotlib figures (for notebooks); text
is drawn by matplotlib with its bundled font, so nothing depends on system fonts (the fork's captions needed
DejaVuSans to be findable).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from dino_lib.viz.figures import finish_figure

__all__ = [
    "ERROR_COLOURS",
    "colourise",
    "blend",
    "side_by_side",
    "error_codes",
    "error_map",
    "confidence_map",
    "legend_handles",
    "plot_overlays",
    "plot_confidence",
    "failure_gallery",
]

#: Error-map colours: correct, wrong (incl. a predicted ignore on a labelled pixel), GT ignore (not scored).
ERROR_COLOURS = np.array([[46, 160, 67], [214, 39, 40], [110, 110, 110]], dtype=np.uint8)


def colourise(ids: np.ndarray, palette: np.ndarray, *, ignore_colour: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 through a (K, 3) palette; ids >= K (e.g. the ignore id) get ``ignore_colour``."""
    pal = np.asarray(palette, dtype=np.uint8)
    lut = np.empty((256 if ids.max(initial=0) < 256 else int(ids.max()) + 1, 3), dtype=np.uint8)
    lut[:] = np.asarray(ignore_colour, dtype=np.uint8)
    k = min(len(pal), len(lut))
    lut[:k] = pal[:k]
    return lut[np.asarray(ids, dtype=np.int64)]


def blend(image: np.ndarray | None, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colour`` (the fork's 0.5/0.5 overlay); no image -> the colours alone."""
    if image is None:
        return colour
    if image.shape[:2] != colour.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and label {colour.shape[:2]} differ in size")
    mixed = (1 - alpha) * image[..., :3].astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def side_by_side(
    image: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray,
    palette: np.ndarray,
    *,
    alpha: float = 0.5,
    separator: int = 10,
    with_errors: bool = False,
    ignore_index: int = 255,
) -> np.ndarray:
    """One RGB array: GT overlay | prediction overlay (| error map), separated by black bars (fork layout)."""
    tiles = [blend(image, colourise(gt, palette), alpha), blend(image, colourise(pred, palette), alpha)]
    if with_errors:
        tiles.append(error_map(gt, pred, ignore_index=ignore_index))
    bar = np.zeros((gt.shape[0], separator, 3), dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        parts += ([bar] if i else []) + [t]
    return np.concatenate(parts, axis=1)


def error_codes(gt: np.ndarray, pred: np.ndarray, *, ignore_index: int = 255) -> np.ndarray:
    """(H, W) uint8: 0 correct, 1 wrong (a predicted ignore on a labelled pixel is wrong), 2 GT ignore."""
    codes = np.where(gt == pred, 0, 1).astype(np.uint8)
    codes[gt == ignore_index] = 2
    return codes


def error_map(gt: np.ndarray, pred: np.ndarray, *, ignore_index: int = 255) -> np.ndarray:
    """(H, W, 3) uint8 error map coloured with :data:`ERROR_COLOURS` (green correct, red wrong, grey ignore)."""
    return ERROR_COLOURS[error_codes(gt, pred, ignore_index=ignore_index)]


def confidence_map(probs: np.ndarray, kind: str = "max") -> np.ndarray:
    """(C, H, W) soft probabilities -> (H, W) confidence in [0, 1].

    Args:
        probs: per-class probabilities (any float dtype, e.g. the fp16 ``probs/<frame>.npy``).
        kind: ``"max"`` (top-1 probability), ``"margin"`` (top-1 minus top-2) or ``"entropy"`` (1 - normalised
            entropy).
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 3:
        raise ValueError(f"expected (C, H, W) probabilities, found shape {p.shape}")
    invalid = ~np.isfinite(p).all(axis=0)  # NaN/Inf anywhere in a pixel: its confidence is unknown (NaN)
    if invalid.any():
        return np.where(invalid, np.nan, confidence_map(np.where(np.isfinite(p), p, 0), kind)).astype(np.float32)
    total = p.sum(axis=0, keepdims=True)
    p = np.where(total > 0, p / np.maximum(total, 1e-12), 0)  # all-zero mass (predicted ignore) -> confidence 0
    if kind == "max":
        return p.max(axis=0)
    if kind == "margin":
        if p.shape[0] < 2:
            return p[0]
        top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]  # (2, H, W): second largest, largest
        return top2[1] - top2[0]
    if kind == "entropy":
        if p.shape[0] < 2:
            return np.ones(p.shape[1:], dtype=np.float32)
        ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=0)
        return np.where(total[0] > 0, 1 - ent / np.log(p.shape[0]), 0).astype(np.float32)
    raise ValueError(f"unknown confidence kind {kind!r}; expected 'max', 'margin' or 'entropy'")


def legend_handles(class_ids: Sequence[int], palette: np.ndarray, class_names: Sequence[str] | None = None) -> list:
    """Matplotlib patches (colour + "id name") for ``class_ids``; black outlines keep dark colours visible."""
    from matplotlib.patches import Patch

    names = list(class_names) if class_names is not None else []
    pal = np.asarray(palette, dtype=np.float32) / 255.0
    out = []
    for c in class_ids:
        label = f"{c} {names[c]}" if c < len(names) else str(c)
        colour = pal[c] if c < len(pal) else (0.0, 0.0, 0.0)
        out.append(Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=label))
    return out


def _present(arrays: Sequence[np.ndarray], ignore_index: int) -> list[int]:
    ids = np.unique(np.concatenate([np.unique(a) for a in arrays]))
    return [int(i) for i in ids if i != ignore_index]


def plot_overlays(
    image: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
    ignore_index: int = 255,
    alpha: float = 0.5,
    with_errors: bool = True,
    figsize_per_panel: float = 4.0,
):
    """Figure: "Ground truth" and "Prediction" overlays (and an error map) side by side with a class legend."""
    import matplotlib.pyplot as plt

    panels = [
        ("Ground truth", blend(image, colourise(gt, palette), alpha)),
        ("Prediction", blend(image, colourise(pred, palette), alpha)),
    ]
    if with_errors:
        panels.append(("Errors (green ok, red wrong, grey ignore)", error_map(gt, pred, ignore_index=ignore_index)))
    aspect = gt.shape[0] / gt.shape[1]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(figsize_per_panel * len(panels), figsize_per_panel * aspect + 1.2)
    )
    for ax, (name, arr) in zip(np.atleast_1d(axes), panels):
        ax.imshow(arr)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    handles = legend_handles(_present([gt, pred], ignore_index), palette, class_names)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6) or 1, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def plot_confidence(image: np.ndarray | None, probs: np.ndarray, *, kind: str = "max", title: str | None = None):
    """Figure: frame and the confidence heat map of its soft prediction, with a colour bar."""
    import matplotlib.pyplot as plt

    conf = confidence_map(probs, kind)
    n_bad = int(np.isnan(conf).sum())
    if n_bad:
        warnings.warn(f"{title or 'confidence figure'}: {n_bad} pixels with NaN/Inf probabilities (drawn grey)",
                      stacklevel=2)  # fmt: skip
    cmap = plt.get_cmap("magma").with_extremes(bad="0.6")
    fig, axes = plt.subplots(1, 2 if image is not None else 1, figsize=(8 if image is not None else 4.5, 3))
    axes = np.atleast_1d(axes)
    if image is not None:
        axes[0].imshow(image)
        axes[0].set_title("Frame", fontsize=9)
        axes[0].axis("off")
    im = axes[-1].imshow(conf, cmap=cmap, vmin=0, vmax=1)
    axes[-1].set_title(f"Confidence ({kind})", fontsize=9)
    axes[-1].axis("off")
    fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.04)
    return finish_figure(fig, title)


def failure_gallery(
    frame_class_iou: pd.DataFrame,
    load: Callable[[str, str], tuple[np.ndarray | None, np.ndarray, np.ndarray]],
    palette: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    per_class: int = 3,
    max_classes: int = 4,
    classes: Sequence[int] | None = None,
    min_gt_pixels: int = 1,
    ignore_index: int = 255,
):
    """Figure: for each class, its ``per_class`` worst frames (lowest per-frame IoU) as GT | prediction | errors.

    Args:
        frame_class_iou: the report's long table (run, frame, evaluated, class_id, iou, gt_pixels).
        load: ``load(run, frame) -> (image or None, gt, pred)``.
        palette: (K, 3) colours.
        class_names: names for titles.
        per_class: frames shown per class.
        max_classes: when ``classes`` is None, the classes with the lowest mean per-frame IoU, at most this many.
        classes: explicit class ids to show.
        min_gt_pixels: skip frames where the class covers fewer GT pixels (tiny slivers dominate otherwise).
    """
    import matplotlib.pyplot as plt

    df = frame_class_iou
    if "evaluated" in df:
        df = df[df["evaluated"]]
    df = df[df["gt_pixels"] >= min_gt_pixels]
    if df.empty:
        raise ValueError("no evaluated frame/class pair to show (is min_gt_pixels too high?)")
    if classes is None:
        classes = df.groupby("class_id")["iou"].mean().sort_values().index[:max_classes].tolist()
    names = list(class_names) if class_names is not None else []
    rows = [(c, df[df["class_id"] == c].nsmallest(per_class, "iou")) for c in classes]
    rows = [(c, sel) for c, sel in rows if not sel.empty]
    if not rows:
        raise ValueError(f"classes {list(classes)} have no evaluated frame")
    ncol = max(len(sel) for _, sel in rows)
    first = rows[0][1].iloc[0]
    _, gt0, _ = load(str(first["run"]), str(first["frame"]))
    aspect = gt0.shape[0] / (3 * gt0.shape[1] + 20)  # one panel: GT | prediction | errors with two 10-px bars
    fig, axes = plt.subplots(
        len(rows), ncol, figsize=(5.2 * ncol, (5.2 * aspect + 0.35) * len(rows) + 0.5), squeeze=False
    )
    for r, (c, sel) in enumerate(rows):
        for k in range(ncol):
            ax = axes[r, k]
            ax.axis("off")
            if k >= len(sel):
                continue
            item = sel.iloc[k]
            image, gt, pred = load(str(item["run"]), str(item["frame"]))
            ax.imshow(side_by_side(image, gt, pred, palette, with_errors=True, ignore_index=ignore_index))
            cname = names[c] if c < len(names) else str(c)
            ax.set_title(f"{cname}: {item['run']}/{item['frame']}  IoU {item['iou']:.2f}", fontsize=8)
    fig.suptitle("Worst frames per class (GT | prediction | errors)", fontsize=10)
    fig.tight_layout()
    return fig
