"""The figures and the video of an attention run (:class:`dino_lib.attention.pipeline.AttentionRun`).

Arrays in, files out; nothing here runs a model. Per image ``<name>_heads.png`` (every head over the picture and
their mean) and, with a threshold, ``<name>_masks.png``; ``patch_pca.png`` when the run holds PCA colours; the
attention video ``video.<mp4|gif>`` when it holds video maps. The command-line twin and the notebook call::

    run = run_attention(cfg)        # dino_lib.attention.pipeline: maps and data files
    write_run_figures(run)          # this module: figures and video (fills run.summary)
    write_summary(run)              # summary.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt

from dino_lib.attention.pipeline import AttentionRun, PatchPCAImages
from dino_lib.attention.video import VideoAttention, VideoResult, attention_frames
from dino_lib.viz.attention import head_grid_figure, mask_figure
from dino_lib.viz.figures import save_figure
from dino_lib.viz.pca import patch_pca_figure
from dino_lib.viz.video import write_video

__all__ = [
    "write_map_figures",
    "write_patch_pca_figure",
    "write_attention_video",
    "write_run_figures",
]

logger = logging.getLogger(__name__)

VIDEO_OUTPUT_SUFFIXES = (".mp4", ".gif", ".mov", ".mkv")


def _save(fig: Any, path: Path) -> Path:
    saved = save_figure(fig, path)
    plt.close(fig)
    return saved


def write_map_figures(run: AttentionRun) -> list[Path]:
    """Per image: the head grid ``<name>_heads.png`` and, with ``cfg.threshold``, the masks ``<name>_masks.png``."""
    cfg, out = run.cfg, run.output_dir
    written = []
    for res in run.results:
        fig = head_grid_figure(res.picture, res.upsampled(mode="bilinear"), normalization=cfg.normalization, alpha=0.6)
        written.append(_save(fig, out / f"{res.name}_heads.png"))
        if cfg.threshold is not None:
            fig = mask_figure(res.picture, res.masks(cfg.threshold), threshold=cfg.threshold)
            written.append(_save(fig, out / f"{res.name}_masks.png"))
    return written


def write_patch_pca_figure(pca: PatchPCAImages, path: str | Path) -> Path:
    """One row per image (picture, first component, PCA colours), titled with the variance explained."""
    explained = ", ".join(f"{v:.2f}" for v in pca.pca.explained)
    fig = patch_pca_figure(
        pca.pictures, pca.pca.rgb, pca.pca.first, names=pca.names, title=f"variance explained: {explained}"
    )
    return _save(fig, Path(path))


def write_attention_video(
    video: VideoAttention,
    output: str | Path,
    *,
    normalization: Literal["clip", "frame"] = "clip",
    render: Literal["overlay", "map"] = "overlay",
    alpha: float = 0.6,
    cmap: str = "inferno",
) -> VideoResult:
    """Encode the frames of :func:`dino_lib.attention.video.attention_frames` into ``output`` (``.mp4`` or ``.gif``).

    Args:
        video: the maps of :func:`dino_lib.attention.video.video_attention`.
        output: ``.mp4`` or ``.gif`` path (``.mov``/``.mkv`` too).
        normalization: ``"clip"`` (one colour range) or ``"frame"`` (per-frame min-max, the reference).
        render: ``"overlay"`` (map blended over the frame) or ``"map"`` (the colour map alone, the reference).
        alpha, cmap: opacity and colour map of the overlay.

    Returns:
        :class:`~dino_lib.attention.video.VideoResult`.
    """
    path = Path(output)
    if path.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise ValueError(f"video output {output}: expected a .mp4 or .gif path")
    frames = attention_frames(video, normalization=normalization, render=render, alpha=alpha, cmap=cmap)
    write_video(frames, path, fps=video.fps)
    logger.info("wrote %s: %d frames at %.2f fps", path, video.frames, video.fps)
    return VideoResult(path, video.frames, video.fps, video.geometry.display_hw, video.threshold)


def write_run_figures(run: AttentionRun) -> dict[str, Any]:
    """Every figure of a run, the patch-PCA figure and the video; records them in ``run.summary`` (returned)."""
    write_map_figures(run)
    if run.pca is not None:
        run.summary["patch_pca"] = str(write_patch_pca_figure(run.pca, run.output_dir / "patch_pca.png"))
    if run.video is not None:
        video = write_attention_video(run.video, run.output_dir / f"video.{run.cfg.video_format}")
        run.summary["video"] = {"path": str(video.path), "frames": video.frames, "fps": video.fps}
    return run.summary
