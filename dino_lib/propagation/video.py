"""Per-video label handling and output writing for the propagation loop."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dino_lib.propagation import outputs
from dino_lib.propagation.config import PropagationConfig
from dino_lib.propagation.geometry import FrameGeometry
from dino_lib.propagation.io import PropagationInputError, VideoRun, check_label_ids, read_label
from dino_lib.propagation.labels import channel_ids_for, downsample_labels, merge_channel_ids
from dino_lib.propagation.parity import parity_channel_ids, parity_downsample_labels

__all__ = ["VideoLabels", "dataset_palette", "dataset_num_classes", "check_davis_objects", "check_first_label"]

logger = logging.getLogger(__name__)


def dataset_palette(cfg: PropagationConfig) -> np.ndarray:
    from dino_lib.data.palettes import DAVIS_PALETTE, DRIVING_PALETTE_256

    return DRIVING_PALETTE_256 if cfg.dataset == "driving" else DAVIS_PALETTE


def dataset_num_classes(cfg: PropagationConfig) -> int | None:
    if cfg.num_classes is not None or cfg.dataset != "driving":
        return cfg.num_classes
    from dino_lib.data.palettes import DRIVING_CLASSES

    return len(DRIVING_CLASSES)


def check_davis_objects(
    lab: np.ndarray, path: Path, objects: tuple[int, Path] | None, cfg: PropagationConfig
) -> tuple[np.ndarray, tuple[int, Path]]:
    """Check a DAVIS label against the video's objects; returns the label and ``(N, declaring file)``.

    DAVIS numbers the objects of a video 1..N consecutively in its first label (``objects`` is None for it: the
    label declares them). An id beyond N (a stray pixel value such as 200) would otherwise become a probability
    channel of its own (201 channels for id 200). Such ids are an error naming the file, or mapped to the ignore
    id with ``unknown_ids: ignore``.
    """
    ignore = cfg.ignore_id
    ids = {int(v) for v in np.unique(lab)} - {ignore}
    if objects is None:
        n = 0
        while n + 1 in ids:
            n += 1
        objects = (n, path)
    n, first = objects
    stray = sorted(i for i in ids if i > n)
    if not stray:
        return lab, objects
    if cfg.unknown_ids == "ignore":
        logger.warning("%s: object ids %s beyond the objects 1..%d of %s mapped to ignore (%d)",
                       path, stray[:10], n, first.name, ignore)  # fmt: skip
        return np.where(np.isin(lab, stray), ignore, lab), objects
    raise PropagationInputError(
        f"{path}: object ids {stray[:10]} beyond the objects 1..{n} declared by {first.name} (DAVIS numbers the "
        f"objects of a video 1..N without gaps); fix the label, or set unknown_ids: ignore to map them to the "
        f"ignore id {ignore}"
    )


def check_first_label(cfg: PropagationConfig, run: VideoRun, index: int) -> None:
    """Before any work: the first keyframe label of a DAVIS video declares valid objects (no stray ids)."""
    if cfg.dataset != "davis" or dataset_num_classes(cfg) is not None:
        return
    path = run.label_path(index)
    palette = dataset_palette(cfg) if cfg.rgb_labels == "palette" else None
    check_davis_objects(read_label(path, palette), path, None, cfg)


class VideoLabels:
    """Label reading/validation, channel choice, label encoding and output writing for one video."""

    def __init__(self, cfg: PropagationConfig, run: VideoRun, geometry: FrameGeometry, out_dir: Path) -> None:
        self.cfg, self.run, self.geometry, self.out_dir = cfg, run, geometry, out_dir
        self.parity = cfg.protocol == "davis_parity"
        self.palette = dataset_palette(cfg)
        self.num_classes = dataset_num_classes(cfg)
        self.ignore = "as_class" if self.parity else cfg.ignore_handling
        self.rgb_palette = self.palette[: self.num_classes or 256] if cfg.rgb_labels == "palette" else None
        self.prob_classes: list[int] = list(range(self.num_classes)) if self.num_classes else []
        self.objects: tuple[int, Path] | None = None  # DAVIS: (N, file) once the first label declared objects 1..N

    def label(self, index: int) -> np.ndarray:
        path = self.run.label_path(index)
        lab = read_label(path, self.rgb_palette)
        if lab.shape != self.geometry.native_hw:
            if self.cfg.label_size_mismatch != "resize":
                raise PropagationInputError(
                    f"{path}: label is {lab.shape[1]} x {lab.shape[0]} but frame {self.run.frames[index].name} is "
                    f"{self.geometry.native_hw[1]} x {self.geometry.native_hw[0]} (W x H); fix the label or set "
                    "label_size_mismatch: resize (nearest)"
                )
            logger.warning(
                "%s: label size %s resized (nearest) to the frame size %s", path, lab.shape, self.geometry.native_hw
            )
            h, w = self.geometry.native_hw
            lab = np.asarray(Image.fromarray(lab.astype(np.int32)).resize((w, h), Image.NEAREST)).astype(np.int64)
        lab = check_label_ids(
            lab, path, num_classes=self.num_classes, ignore_id=self.cfg.ignore_id, unknown_ids=self.cfg.unknown_ids
        )  # type: ignore[arg-type]
        return self._check_objects(lab, path) if self.cfg.dataset == "davis" and self.num_classes is None else lab

    def _check_objects(self, lab: np.ndarray, path: Path) -> np.ndarray:
        lab, self.objects = check_davis_objects(lab, path, self.objects, self.cfg)
        return lab

    def channels(self, label: np.ndarray, current: list[int]) -> list[int]:
        if self.parity:
            return parity_channel_ids(label)
        new = channel_ids_for(label, ignore_id=self.cfg.ignore_id, ignore=self.ignore)  # type: ignore[arg-type]
        return merge_channel_ids(current, new) if self.cfg.resolved_policy == "continuous" else new

    def encode(self, label: np.ndarray, channel_ids: list[int]) -> torch.Tensor:
        if self.parity:
            small = parity_downsample_labels(label, self.geometry)
            return downsample_labels(small, small.shape, channel_ids, ignore="as_class")
        return downsample_labels(
            label,
            self.geometry.grid_hw,
            channel_ids,
            mode=self.cfg.label_downsample,
            ignore_id=self.cfg.ignore_id,
            ignore=self.ignore,
        )  # type: ignore[arg-type]

    def write(self, index: int, ids: np.ndarray, probs: torch.Tensor | None, channel_ids: list[int]) -> None:
        stem = self.run.frames[index].stem
        outputs.write_index_png(self.out_dir / f"{stem}.png", ids, self.palette)
        if self.cfg.save_probs and probs is not None:
            outputs.write_probs(self.out_dir / "probs" / f"{stem}.npy", probs, channel_ids, self.prob_classes)

    def done(self, index: int) -> bool:
        stem = self.run.frames[index].stem
        ok = (self.out_dir / f"{stem}.png").is_file()
        return ok and (not self.cfg.save_probs or (self.out_dir / "probs" / f"{stem}.npy").is_file())
