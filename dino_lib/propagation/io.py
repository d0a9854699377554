"""Reading videos for propagation, with validation (layouts and bad-input rules in docs/propagation.md).

The driving-run and DAVIS layouts are found by :mod:`dino_lib.data.video_sets` (shared with the metrics); this
module lists and checks each run's frames and labels.

Frames are natural-sorted (``2`` before ``10``). Every problem raises :class:`PropagationInputError` naming the file,
what was expected, what was found and the fix; lenient behaviour is an explicit opt-in that logs a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from dino_lib.data.image_folder import IMAGE_EXTENSIONS
from dino_lib.data.video_sets import VideoSetError, davis_video_folders, driving_run_folders, natural_key

__all__ = [
    "PropagationInputError",
    "VideoRun",
    "natural_key",
    "list_media",
    "driving_runs",
    "davis_videos",
    "read_label",
    "check_label_ids",
    "check_frame_sizes",
]

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = IMAGE_EXTENSIONS
LABEL_SUFFIXES = (".png",)


class PropagationInputError(VideoSetError):
    """Bad propagation input; the message names the file, what was expected and found, and the fix."""


@dataclass
class VideoRun:
    """One video: frames in order and the label file of every annotated frame (by frame stem)."""

    name: str
    frames: list[Path]
    labels: dict[str, Path] = field(default_factory=dict)
    label_dir: Path | None = None

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.frames]

    def label_path(self, index: int) -> Path:
        """The label of frame ``index``; a missing keyframe label is an error naming the expected path."""
        stem = self.frames[index].stem
        if stem not in self.labels:
            expected = (self.label_dir / f"{stem}.png") if self.label_dir else f"{stem}.png"
            raise PropagationInputError(
                f"run {self.name!r}: keyframe {self.frames[index].name} (frame {index}) needs a label, but {expected} "
                "does not exist; add the label, or choose another refresh_label_interval / keyframe_policy"
            )
        return self.labels[stem]


def list_media(folder: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """Natural-sorted files of ``folder`` with one of ``suffixes``; duplicate names are an error."""
    if not folder.is_dir():
        raise PropagationInputError(f"{what} folder not found: {folder}; check data_path and the folder layout")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")]
    files.sort(key=lambda p: natural_key(p.stem))
    keys: dict[tuple, Path] = {}
    for p in files:
        key = tuple(natural_key(p.stem))
        if key in keys:
            raise PropagationInputError(
                f"{folder}: duplicate {what} names {keys[key].name} and {p.name} (same frame after natural sorting); "
                "keep exactly one file per frame"
            )
        keys[key] = p
    return files


def _make_run(name: str, image_dir: Path, label_dir: Path, frame_suffixes: Sequence[str]) -> VideoRun:
    frames = list_media(image_dir, frame_suffixes, "frame")
    if not frames:
        raise PropagationInputError(
            f"run {name!r}: no frames ({', '.join(frame_suffixes)}) in {image_dir}; the run is empty — remove it or "
            "add its frames"
        )
    numbers = [int(p.stem) for p in frames if p.stem.isdigit()]
    if len(numbers) == len(frames) > 1:
        gaps = [(a, b) for a, b in zip(numbers, numbers[1:]) if b - a != 1]
        if gaps:  # a gap is legal (subsampled runs) but worth knowing: chunks are counted in frames, not time
            logger.warning(
                "run %s: %d gap(s) in frame numbering in %s, first between %d and %d",
                name,
                len(gaps),
                image_dir,
                *gaps[0],
            )
    labels = list_media(label_dir, LABEL_SUFFIXES, "label") if label_dir.is_dir() else []
    stems = {p.stem for p in frames}
    orphans = [p.name for p in labels if p.stem not in stems]
    if orphans:
        raise PropagationInputError(
            f"run {name!r}: {len(orphans)} label file(s) in {label_dir} have no frame in {image_dir} "
            f"(first: {orphans[:5]}); labels must have the same stem as their frame — rename or remove them"
        )
    return VideoRun(name, frames, {p.stem: p for p in labels}, label_dir)


def driving_runs(
    root: Path, runs: Sequence[str] | None = None, frame_suffixes: Sequence[str] = FRAME_SUFFIXES
) -> list[VideoRun]:
    """Runs of a driving DATAROOT (``<run>/image``, ``<run>/segmentation``), sorted naturally."""
    folders = driving_run_folders(root, marker="image", runs=runs, error=PropagationInputError)
    return [_make_run(f.name, f.images, f.labels, frame_suffixes) for f in folders]


def davis_videos(
    root: Path, *, resolution: str = "480p", split: str = "val", videos: Sequence[str] | None = None
) -> list[VideoRun]:
    """DAVIS 2017 videos of ``split`` (``ImageSets/2017/<split>.txt``, or every video folder when it is absent)."""
    folders = davis_video_folders(
        root, resolution=resolution, listing=f"2017/{split}.txt", videos=videos, error=PropagationInputError
    )
    return [_make_run(f.name, f.images, f.labels, (".jpg",)) for f in folders]


def read_label(path: Path, rgb_palette: np.ndarray | None = None) -> np.ndarray:
    """An id map ``(H, W)`` int64 from an index PNG (mode ``L``/``P``/16-bit); RGB only with ``rgb_palette``.

    Args:
        path: label file.
        rgb_palette: ``(K, 3)`` colours of ids ``0..K-1`` to decode colour-coded labels; None makes them an error.
    """
    with Image.open(path) as img:
        mode = img.mode
        arr = np.asarray(img)
    if mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        return arr.astype(np.int64)
    if mode in ("RGB", "RGBA") and arr.ndim == 3:
        rgb = arr[..., :3]
        if rgb_palette is None:
            raise PropagationInputError(
                f"{path}: label is an {mode} colour image, expected single-channel class ids (mode L or P); convert "
                "it to an index PNG, or set rgb_labels: palette to decode colours with the dataset palette"
            )
        return _decode_rgb(rgb, rgb_palette, path)
    raise PropagationInputError(f"{path}: unsupported label image mode {mode!r}; expected an index PNG (L or P)")


def _decode_rgb(rgb: np.ndarray, palette: np.ndarray, path: Path) -> np.ndarray:
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = np.asarray(palette, dtype=np.int64)
    codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    out = np.full(packed.shape, -1, dtype=np.int64)
    for code in np.unique(packed):
        ids = np.flatnonzero(codes == code)
        colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
        if len(ids) == 0:
            raise PropagationInputError(f"{path}: colour {colour} is not in the dataset palette; cannot decode it")
        if len(ids) > 1:
            raise PropagationInputError(
                f"{path}: colour {colour} belongs to several classes {ids.tolist()} of the palette; colour-coded "
                "labels are ambiguous for them — provide index labels"
            )
        out[packed == code] = ids[0]
    return out


def check_label_ids(
    label: np.ndarray,
    path: Path,
    *,
    num_classes: int | None,
    ignore_id: int | None,
    unknown_ids: Literal["error", "ignore"] = "error",
) -> np.ndarray:
    """Unknown ids (>= num_classes and not the ignore id) are an error, or remapped to ignore on request."""
    if num_classes is None:
        if ignore_id is not None and label.max(initial=0) > 255:
            raise PropagationInputError(f"{path}: label ids up to {label.max()} do not fit an 8-bit index PNG")
        return label
    bad = (label >= num_classes) | (label < 0)
    if ignore_id is not None:
        bad &= label != ignore_id
    if not bad.any():
        return label
    ids = sorted(int(v) for v in np.unique(label[bad]))
    if unknown_ids == "ignore" and ignore_id is not None:
        logger.warning("%s: unknown class ids %s remapped to ignore (%d)", path, ids[:10], ignore_id)
        return np.where(bad, ignore_id, label)
    raise PropagationInputError(
        f"{path}: unknown class ids {ids[:10]} (expected 0..{num_classes - 1} or ignore {ignore_id}); fix the labels, "
        "set num_classes, or set unknown_ids: ignore to map them to the ignore id"
    )


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the file header (no decoding)."""
    with Image.open(path) as img:
        w, h = img.size
    return h, w


def check_frame_sizes(run: VideoRun, policy: Literal["error", "resize"] = "error") -> tuple[int, int]:
    """All frames must share the first frame's size (``resize`` maps them to it with a warning); returns it."""
    first = image_size(run.frames[0])
    for p in run.frames[1:]:
        size = image_size(p)
        if size != first:
            if policy == "resize":
                logger.warning("run %s: %s is %s, resized to the first frame's %s", run.name, p.name, size, first)
                continue
            raise PropagationInputError(
                f"run {run.name!r}: frame {p} is {size[1]} x {size[0]} but {run.frames[0].name} is {first[1]} x "
                f"{first[0]} (W x H); frames of one run must have one size — fix the run or set "
                "frame_size_mismatch: resize"
            )
    return first
