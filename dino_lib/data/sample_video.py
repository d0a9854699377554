"""A short video with exact labels: a known camera motion over a real photograph.

The source is scikit-learn's ``china.jpg`` (a pagoda among trees under a bright sky, CC BY 2.0). A label map of the
whole photo (the "world") is built once from SLIC superpixels grouped by colour and mapped onto a few of the 27
driving classes. Each frame is a window of the world that moves and zooms smoothly; photo and
labels are sampled through the same transform, so every frame has exact ground truth:

    frame pixel (i, j) shows the world point x = x0_t + (j + 0.5) * s_t, y = y0_t + (i + 0.5) * s_t
    label(i, j) = world_label[floor(y), floor(x)]

Pixels of the world label map closer than ``band`` world pixels to another class are 255 (ignore). The band is as
wide as the largest half frame-pixel, so mapping a frame-0 label to frame t by the known motion (nearest sampling)
reproduces the frame-t label wherever both are defined. The same frames are written in two layouts:

* ``driving/<run>/image/00000.jpg`` + ``segmentation/00000.png`` (mode "L", ids 0-26, 255 = ignore) and
  ``driving/<run>/camera.json`` with the motion (the driving-run layout);
* ``davis/JPEGImages/480p/<video>/00000.jpg`` + ``Annotations/480p/<video>/00000.png`` (mode "P", DAVIS palette,
  0 = background, 1..N = the largest connected regions that are not sky) + ``ImageSets/2017/val.txt``
  (the DAVIS layout).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from dino_lib.data.palettes import DAVIS_PALETTE, DRIVING_CLASSES, DRIVING_IGNORE_ID, pil_palette
from dino_lib.data.sample_photos import JPEG_QUALITY, load_photo

__all__ = [
    "RUN_NAME",
    "VIDEO_NAME",
    "NUM_FRAMES",
    "FRAME_HW",
    "SampleVideo",
    "make_video",
    "build_driving",
    "build_davis",
]

RUN_NAME = "pagoda-pan"
VIDEO_NAME = "pagoda-pan"
SOURCE_PHOTO = "china"
NUM_FRAMES = 16
FRAME_HW = (160, 288)  # (H, W): 10 x 18 patches of 16 px
NUM_INSTANCES = 3
# Window of the first and last frame in world pixels: left, top, width. The motion pans right and down while the
# window narrows by 15 % (zoom in); the easing makes the camera start and stop smoothly.
_START = (30.0, 80.0, 440.0)
_END = (205.0, 128.0, 374.0)
# Classes the colour clusters map to, in the order the clusters are ranked in _cluster_classes.
_SKY, _BUILDING, _VEGETATION, _TERRAIN, _FENCE = (
    DRIVING_CLASSES.index(c) for c in ("sky", "building", "vegetation", "terrain", "fence")
)


@dataclass(frozen=True)
class SampleVideo:
    """Frames, labels and motion of the sample video (all arrays read-only)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    labels: np.ndarray  # (T, H, W) uint8 class ids, 255 = ignore
    instances: np.ndarray  # (T, H, W) uint8 object ids, 0 = background
    windows: np.ndarray  # (T, 3) float64: left x0, top y0, scale s (world pixels per frame pixel)
    world_labels: np.ndarray  # (Hw, Ww) uint8 banded class map of the source photo
    band: int  # ignore band radius in world pixels


def camera_windows(num_frames: int = NUM_FRAMES, frame_hw: tuple[int, int] = FRAME_HW) -> np.ndarray:
    """(T, 3) windows (x0, y0, s) of a smooth pan + zoom; frame t covers s * W by s * H world pixels."""
    t = np.linspace(0.0, 1.0, num_frames)
    ease = 0.5 - 0.5 * np.cos(np.pi * t)  # zero velocity at both ends
    start, end = np.asarray(_START), np.asarray(_END)
    x0, y0, width = (start[None] + ease[:, None] * (end - start)[None]).T
    return np.stack([x0, y0, width / frame_hw[1]], axis=1)


def _kmeans(x: np.ndarray, weights: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Weighted k-means with a deterministic farthest-point start; returns the cluster of each row of ``x``."""
    centres = [x[np.argmax(weights)]]
    for _ in range(1, k):
        d = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[np.argmax(d * weights)])
    c = np.asarray(centres)
    for _ in range(iters):
        assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            m = assign == j
            if m.any():
                c[j] = np.average(x[m], axis=0, weights=weights[m])
    return np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)


def _cluster_classes(lab_means: np.ndarray) -> np.ndarray:
    """Map 5 colour clusters (rows of Lab means) to driving class ids: the brightest is sky, the reddest building,
    the greenest vegetation, and of the other two the brighter is terrain and the darker fence."""
    lightness, redness = lab_means[:, 0], lab_means[:, 1]
    left = list(range(len(lab_means)))
    ids = np.zeros(len(lab_means), dtype=np.uint8)
    for score, cls in (
        (lightness, _SKY),
        (redness, _BUILDING),
        (-redness, _VEGETATION),
        (lightness, _TERRAIN),
        (lightness, _FENCE),
    ):
        best = max(left, key=lambda j, score=score: score[j])
        ids[best] = cls
        left.remove(best)
    return ids


def world_class_map(photo: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class map of the whole photo (no ignore band yet)."""
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    seg = slic(photo, n_segments=150, compactness=10.0, start_label=0, enforce_connectivity=True)
    lab = rgb2lab(photo).reshape(-1, 3)
    n = int(seg.max()) + 1
    counts = np.bincount(seg.ravel(), minlength=n).astype(np.float64)
    means = (
        np.stack([np.bincount(seg.ravel(), lab[:, c], minlength=n) for c in range(3)], 1)
        / np.maximum(counts, 1)[:, None]
    )
    cluster = _kmeans(means, counts, k=5)
    cluster_lab = np.stack([np.average(means[cluster == j], axis=0, weights=counts[cluster == j]) for j in range(5)])
    return _cluster_classes(cluster_lab)[cluster][seg]


def ignore_band(labels: np.ndarray, radius: int) -> np.ndarray:
    """Set to 255 every pixel with another class within ``radius`` pixels (Chebyshev distance)."""
    size = 2 * radius + 1
    mixed = ndimage.maximum_filter(labels, size=size, mode="nearest") != ndimage.minimum_filter(
        labels, size=size, mode="nearest"
    )
    out = labels.copy()
    out[mixed] = DRIVING_IGNORE_ID
    return out


def world_instances(classes: np.ndarray, num: int = NUM_INSTANCES) -> np.ndarray:
    """(H, W) uint8 object ids 1..num for the largest connected non-sky regions, 0 elsewhere."""
    out = np.zeros(classes.shape, dtype=np.uint8)
    components = []
    for cls in np.unique(classes):
        if cls == _SKY:
            continue
        comp, n = ndimage.label(classes == cls)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        components += [(int(sizes[i]), int(cls), i, comp) for i in range(1, n + 1)]
    components.sort(key=lambda c: (-c[0], c[1], c[2]))  # largest first; ties broken by class and component index
    for obj_id, (_, _, i, comp) in enumerate(components[:num], start=1):
        out[comp == i] = obj_id
    return out


def sample_points(window: np.ndarray, frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (y, x), each (H, W), of the pixel centres of a frame with window (x0, y0, s)."""
    x0, y0, s = window
    ii, jj = np.meshgrid(np.arange(frame_hw[0]), np.arange(frame_hw[1]), indexing="ij")
    return y0 + (ii + 0.5) * s, x0 + (jj + 0.5) * s


@functools.lru_cache(maxsize=1)
def make_video() -> SampleVideo:
    """Build the sample video in memory (deterministic; cached for the process)."""
    photo = load_photo(SOURCE_PHOTO)
    windows = camera_windows()
    right = windows[:, 0] + windows[:, 2] * FRAME_HW[1]
    bottom = windows[:, 1] + windows[:, 2] * FRAME_HW[0]
    if windows[:, :2].min() < 0 or right.max() > photo.shape[1] or bottom.max() > photo.shape[0]:
        raise ValueError(f"camera windows leave the {photo.shape[1]} x {photo.shape[0]} source photo; fix _START/_END")
    # Mapping a frame-0 pixel to frame t moves its world point by at most half a frame-0 pixel (s_0 / 2 world px),
    # i.e. into a neighbouring world cell within ceil(s_max / 2): a band that wide makes the labels warp-exact.
    band = max(1, math.ceil(windows[:, 2].max() / 2))
    classes = world_class_map(photo)
    world_labels = ignore_band(classes, band)
    instances = world_instances(classes)
    photo_f = photo.astype(np.float32)
    frames, labels, objects = [], [], []
    for window in windows:
        ys, xs = sample_points(window, FRAME_HW)
        s = float(window[2])
        # anti-alias before bilinear down-sampling by s (Gaussian of the scale's extra blur)
        blurred = ndimage.gaussian_filter(photo_f, sigma=(0.5 * math.sqrt(max(s * s - 1, 0)),) * 2 + (0,))
        # array index p holds the pixel whose centre is at p + 0.5
        rgb = [
            ndimage.map_coordinates(blurred[..., c], [ys - 0.5, xs - 0.5], order=1, mode="nearest") for c in range(3)
        ]
        frames.append(np.clip(np.rint(np.stack(rgb, -1)), 0, 255).astype(np.uint8))
        yi, xi = np.floor(ys).astype(int), np.floor(xs).astype(int)
        labels.append(world_labels[yi, xi])
        objects.append(instances[yi, xi])
    arrays = [np.stack(frames), np.stack(labels), np.stack(objects), windows, world_labels]
    for a in arrays:
        a.setflags(write=False)
    return SampleVideo(*arrays, band=band)


def _camera_json(video: SampleVideo) -> str:
    info = {
        "source": "scikit-learn sample image china.jpg (CC BY 2.0)",
        "world_hw": list(video.world_labels.shape),
        "frame_hw": list(FRAME_HW),
        "windows_x0_y0_s": video.windows.tolist(),  # full precision: floats round-trip through JSON
        "ignore_band_world_px": video.band,
        "convention": "frame pixel (i, j) shows world point x = x0 + (j + 0.5) * s, y = y0 + (i + 0.5) * s; "
        "label = world_label[floor(y), floor(x)]",
        "classes": {int(c): DRIVING_CLASSES[c] for c in np.unique(video.world_labels) if c != DRIVING_IGNORE_ID},
    }
    return json.dumps(info, indent=2) + "\n"


def build_driving(dest: Path) -> int:
    """Write the driving-layout run ``dest/<run>/{image,segmentation}/`` + ``camera.json``; returns frame count."""
    video = make_video()
    run = dest / RUN_NAME
    (run / "image").mkdir(parents=True)
    (run / "segmentation").mkdir()
    for t in range(len(video.frames)):
        Image.fromarray(video.frames[t]).save(run / "image" / f"{t:05d}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(video.labels[t], mode="L").save(run / "segmentation" / f"{t:05d}.png")
    (run / "camera.json").write_text(_camera_json(video))
    return len(video.frames)


def build_davis(dest: Path) -> int:
    """Write the DAVIS-layout copy of the video under ``dest``; returns frame count."""
    video = make_video()
    jpeg_dir = dest / "JPEGImages" / "480p" / VIDEO_NAME
    ann_dir = dest / "Annotations" / "480p" / VIDEO_NAME
    jpeg_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    palette = pil_palette(DAVIS_PALETTE)
    for t in range(len(video.frames)):
        Image.fromarray(video.frames[t]).save(jpeg_dir / f"{t:05d}.jpg", quality=JPEG_QUALITY)
        ann = Image.fromarray(video.instances[t], mode="P")
        ann.putpalette(palette)
        ann.save(ann_dir / f"{t:05d}.png")
    sets = dest / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text(VIDEO_NAME + "\n")
    return len(video.frames)
