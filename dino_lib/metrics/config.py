"""Configuration of the segmentation-metrics step (notebook ``segmentation_metrics``, ``python -m dino_lib.metrics``).

The keys equal the notebook parameters and ``params/segmentation_metrics/*.yaml``; see ``docs/metrics.md``.
"""

from __future__ import annotations

import dataclasses

from dino_lib.config import ConfigError, param

__all__ = ["MetricsConfig"]


@dataclasses.dataclass
class MetricsConfig:
    """Parameters of a metrics run (docs/metrics.md)."""

    # inputs
    predictions: str | None = param(None, help="PRED folder (PRED/<run>/<frame>.png); null = make a demo stand-in")
    ground_truth: str = param("sample:driving", help="DATAROOT of runs, one run folder, a DAVIS root, or sample:<x>")
    mode: str = param("semantic", choices=("semantic", "davis"), help="semantic IoU family or DAVIS J&F")
    output_dir: str = param("runs/segmentation_metrics", help="where tables, figures and videos are written")
    runs: list[str] | None = param(None, help="runs/videos to evaluate (default: all with predictions)")
    # semantic options
    num_classes: int = param(27, ge=1, le=65535, help="class ids 0..num_classes-1")
    ignore_index: int = param(255, ge=0, help="ground-truth id that is not scored")
    class_names: list[str] | None = param(None, help="names of the classes (default: the driving class names)")
    include_label_frames: bool = param(False, help="also score the annotated frames")
    label_frames: list[int] | None = param(None, help="positions of annotated frames (overrides the manifest)")
    label_every: int | None = param(None, ge=1, help="annotated frames every N frames (overrides the manifest)")
    pred_ignore: str = param("wrong", choices=("wrong", "error"), help="a predicted ignore id is wrong, or an error")
    unknown_ids: str = param("error", choices=("error", "ignore"), help="ids outside the classes: error or ignore")
    missing: str = param("error", choices=("error", "intersect"), help="missing frames: error or evaluate overlap")
    resize_mismatched: bool = param(False, help="resize predictions of the wrong size to the label size (nearest)")
    # DAVIS options
    davis_resolution: str = param("480p", help="Annotations/<resolution>")
    davis_imageset: str | None = param("2017/val.txt", help="ImageSets/<file> listing the videos (null = all)")
    bound_th: float = param(0.008, gt=0, help="F boundary tolerance: fraction of the diagonal (< 1) or pixels")
    # stand-in predictions when predictions is null
    standin: str = param(
        "auto",
        choices=("auto", "propagation", "corrupt"),
        help="auto = tiny random ViT propagation when available, else corrupted ground truth",
    )
    standin_label_every: int = param(8, ge=1, help="annotated-frame interval of the stand-in predictions")
    seed: int = param(0, help="seed of the stand-in predictions")
    device: str = param("auto", help="device of the stand-in propagation (auto, cpu, cuda)")
    # figures and videos
    overlays: int = param(3, ge=0, help="overlay figures written (evenly spaced evaluated frames)")
    gallery_per_class: int = param(3, ge=0, help="worst frames per class in the failure gallery (0 = none)")
    gallery_classes: int = param(4, ge=1, help="classes in the failure gallery (lowest mean IoU first)")
    video: str | None = param("gif", choices=("mp4", "gif", None), help="video of the first run (null = none)")
    fps: float = param(4.0, gt=0, help="video frame rate")
    num_workers: int = param(2, ge=1, help="threads decoding PNGs")

    def validate(self) -> None:
        if self.label_frames is not None and self.label_every is not None:
            raise ConfigError("give either label_frames or label_every, not both")
        if self.ignore_index < self.num_classes:
            raise ConfigError(
                f"ignore_index={self.ignore_index} must not be a class id (num_classes={self.num_classes})"
            )
