"""Configuration of the segmentation-metrics step (notebook ``segmentation_metrics``, ``python -m dino_lib.metrics``).

The keys equal the notebook parameters and ``params/segmentation_metrics/*.yaml``; see ``docs/metrics.md``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from dino_lib.config import ConfigError, param

__all__ = ["MetricsConfig", "NO_PREDICTIONS"]

#: Why a run without ``predictions`` stops, and what to do instead.
NO_PREDICTIONS = (
    "predictions: no prediction folder given (predictions is null). The metrics step scores the output folder of a "
    "propagation run (PRED/<run>/<frame>.png + manifest.json): run the propagate_segmentation notebook or "
    "`python -m dino_lib.propagation --config params/propagate_segmentation/ci.yaml output_dir=PRED` first, then "
    "pass predictions=PRED (the segmentation_metrics notebook propagates by itself when predictions is None)"
)
_STANDIN_MOVED = (
    "the metrics step no longer makes stand-in predictions; make them with tools/demo/standin.py (or propagate with "
    "dino_lib.propagation) and pass the folder as predictions"
)


@dataclasses.dataclass
class MetricsConfig:
    """Parameters of a metrics run (docs/metrics.md)."""

    #: Keys of earlier versions -> where their job went (see dino_lib.config.from_dict).
    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "standin": _STANDIN_MOVED,
        "standin_label_every": _STANDIN_MOVED,
        "seed": f"it seeded the stand-in predictions; {_STANDIN_MOVED}",
        "device": f"it set the device of the stand-in propagation; {_STANDIN_MOVED}",
    }

    # inputs
    predictions: str | None = param(
        None, help="PRED folder (PRED/<run>/<frame>.png): the output_dir of propagate_segmentation; required"
    )
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
    # figures and videos
    overlays: int = param(3, ge=0, help="overlay figures written (evenly spaced evaluated frames)")
    gallery_per_class: int = param(3, ge=0, help="worst frames per class in the failure gallery (0 = none)")
    gallery_classes: int = param(4, ge=1, help="classes in the failure gallery (lowest mean IoU first)")
    video: str | None = param("gif", choices=("mp4", "gif", None), help="video of the first run (null = none)")
    fps: float = param(4.0, gt=0, help="video frame rate")
    num_workers: int = param(2, ge=1, help="threads decoding PNGs")

    def require_predictions(self) -> str:
        """The ``predictions`` folder; a run without one is a :class:`ConfigError` naming the key and the fix.

        Not part of :meth:`validate`: the notebook accepts ``predictions = None`` and then propagates itself.
        """
        if self.predictions is None:
            err = ConfigError(NO_PREDICTIONS)
            err.key = "predictions"
            raise err
        return self.predictions

    def validate(self) -> None:
        if self.label_frames is not None and self.label_every is not None:
            raise ConfigError("give either label_frames or label_every, not both")
        if self.ignore_index < self.num_classes:
            raise ConfigError(
                f"ignore_index={self.ignore_index} must not be a class id (num_classes={self.num_classes})"
            )
