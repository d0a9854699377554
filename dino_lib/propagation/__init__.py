"""Label propagation through videos with frozen backbone features (docs/propagation.md).

One core for DAVIS instance propagation and semantic driving runs: per-frame features from any backbone, anchors
plus a queue of recent soft predictions, cosine affinity with temperature, joint top-k over all contexts, a sparse
square (or circular) neighbourhood, compact label channels with zero-mass ignore, and keyframe policies.

Entry points: :func:`propagate` (a whole dataset from a :class:`PropagationConfig`), :func:`propagate_frame` (one
step), :class:`ContextPropagator` (the context queue), :func:`build_extractor` (backbones);
``python -m dino_lib.propagation --config FILE [key=value ...]``.
"""

from dino_lib.propagation.backbones import FeatureExtractor, build_extractor
from dino_lib.propagation.config import PropagationConfig
from dino_lib.propagation.core import ContextPropagator, PropagationParams, l2_normalise, propagate_frame
from dino_lib.propagation.io import PropagationInputError, VideoRun, davis_videos, driving_runs
from dino_lib.propagation.run import RunResult, list_videos, propagate, propagate_video, summary

__all__ = [
    "ContextPropagator",
    "FeatureExtractor",
    "PropagationConfig",
    "PropagationInputError",
    "PropagationParams",
    "RunResult",
    "VideoRun",
    "build_extractor",
    "davis_videos",
    "driving_runs",
    "l2_normalise",
    "list_videos",
    "propagate",
    "propagate_frame",
    "propagate_video",
    "summary",
]
