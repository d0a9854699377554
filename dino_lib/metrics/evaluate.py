"""Evaluate prediction folders of semantic driving runs against ground truth.

DAVIS folders are evaluated by :mod:`dino_lib.metrics.evaluate_davis`.

The semantic path reads each run in batches of frames, validates every file (:mod:`dino_lib.metrics.io`), keeps one
``(C, C + 1)`` confusion matrix per frame (a few kB each) and derives every score from those: per-run and pooled
IoU family over evaluated frames (annotated frames excluded by default), the decay curve over frames since the last
label, per-frame scores for failure galleries, and the fork-compatible number over all frames.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from dino_lib.data.decode import load_rgb
from dino_lib.data.image_folder import IMAGE_EXTENSIONS
from dino_lib.metrics import io
from dino_lib.metrics.io import MetricsInputError
from dino_lib.metrics.semantic import frame_confusions, frames_since_label
from dino_lib.utils.progress import progress_bar

if TYPE_CHECKING:
    from dino_lib.metrics.evaluate_davis import DavisResult

__all__ = ["SemanticOptions", "RunResult", "evaluate_semantic_run", "evaluate_semantic", "find_image", "load_frame"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SemanticOptions:
    """Options of the semantic evaluation (the defaults are the recommended mode; see docs/metrics.md).

    Attributes:
        num_classes: class ids 0 .. num_classes-1 (27 for the driving runs).
        ignore_index: GT id not scored; a predicted ignore counts as wrong (or is an error with pred_ignore=error).
        include_label_frames: score the annotated frames too (excluded by default: their prediction is the label).
        label_frames: positions (0-based, in the natural-sorted frame list) of annotated frames; overrides the
            manifest.
        label_every: annotated frames every N frames from 0 (the fork's 50-frame chunks); overrides the manifest.
        pred_ignore: "wrong" (default) or "error" (strict: any predicted ignore pixel raises).
        unknown_ids: "error" (default) or "ignore" (remap ids outside the classes to the ignore id, with a warning).
        missing: "error" (default) or "intersect" (evaluate frames present in both, with a warning).
        resize_mismatched: resize a prediction of the wrong size to the label size (nearest), with a warning.
        batch_frames: frames per vectorised confusion update.
        num_workers: threads decoding PNGs.
    """

    num_classes: int = 27
    ignore_index: int = 255
    include_label_frames: bool = False
    label_frames: list[int] | None = None
    label_every: int | None = None
    pred_ignore: Literal["wrong", "error"] = "wrong"
    unknown_ids: Literal["error", "ignore"] = "error"
    missing: Literal["error", "intersect"] = "error"
    resize_mismatched: bool = False
    batch_frames: int = 16
    num_workers: int = 2


@dataclasses.dataclass
class RunResult:
    """Per-frame evaluation state of one run; every table and figure is derived from it.

    Attributes:
        name: run (or video) name.
        stems: frame names evaluated or used (natural order).
        positions: position of each frame in the run's full ground-truth frame list.
        is_label: whether each frame is annotated (an anchor of the propagation).
        distances: frames since the last label frame (0 on label frames).
        frame_cms: (N, C, C + 1) per-frame confusion matrices.
        pred_is_gt_copy: frames whose prediction was missing (label frames only) and is the label itself.
        gt_paths, pred_paths: files read (pred None where missing).
        image_dir: folder of the RGB frames (for overlays), or None.
        prob_classes: channel -> class id of ``probs/<frame>.npy`` files, or None.
        pred_dir: the prediction folder of the run.
        include_label_frames: whether label frames enter the default scores.
    """

    name: str
    stems: list[str]
    positions: np.ndarray
    is_label: np.ndarray
    distances: np.ndarray
    frame_cms: np.ndarray
    pred_is_gt_copy: np.ndarray
    gt_paths: list[Path]
    pred_paths: list[Path | None]
    image_dir: Path | None
    pred_dir: Path
    prob_classes: list[int] | None = None
    include_label_frames: bool = False

    @property
    def evaluated(self) -> np.ndarray:
        """Frames entering the default scores: all non-label frames (plus label frames when included)."""
        return ~self.is_label | self.include_label_frames


def find_image(image_dir: Path | None, stem: str) -> Path | None:
    """The RGB frame ``image_dir/<stem>.<image extension>`` (``.jpg`` first), or None."""
    if image_dir is None:
        return None
    for suffix in IMAGE_EXTENSIONS:  # in this order: .jpg first
        p = image_dir / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _label_positions(stems: list[str], manifest: io.RunManifest, opts: SemanticOptions, where: str) -> np.ndarray:
    n = len(stems)
    if opts.label_frames is not None:
        pos = np.asarray(opts.label_frames, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= n):
            raise MetricsInputError(
                f"{where}: label_frames {opts.label_frames} outside the run's {n} frames (0..{n - 1})"
            )
        return np.unique(pos)
    if opts.label_every is not None:
        return np.arange(0, n, int(opts.label_every))
    if manifest.label_frames is not None:
        index = {s: i for i, s in enumerate(stems)}
        unknown = [s for s in manifest.label_frames if s not in index]
        if unknown:
            raise MetricsInputError(f"{where}: the manifest's label frames {unknown[:5]} have no ground-truth file")
        return np.unique([index[s] for s in manifest.label_frames]).astype(np.int64)
    raise MetricsInputError(
        f"{where}: which frames were annotated is unknown (no manifest.json with 'label_frames' next to the "
        f"predictions); pass label_frames=[0] (positions of the annotated frames) or label_every=50"
    )


def _check_ids(ids: np.ndarray, path: Path, opts: SemanticOptions, role: str) -> np.ndarray:
    return io.check_ids(
        ids, path, num_classes=opts.num_classes, ignore_index=opts.ignore_index, unknown_ids=opts.unknown_ids, role=role
    )


def _read_pair(gt_path: Path, pred_path: Path | None, opts: SemanticOptions) -> tuple[np.ndarray, np.ndarray]:
    gt = io.read_index_map(gt_path, role="ground-truth label")
    gt = _check_ids(gt, gt_path, opts, "ground-truth label")
    if pred_path is None:  # missing prediction of an annotated frame: the fork copies the label there
        return gt, gt
    pred = io.read_index_map(pred_path, role="prediction")
    if pred.shape != gt.shape:
        if not opts.resize_mismatched:
            raise MetricsInputError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its label {gt_path} is "
                f"{gt.shape[1]}x{gt.shape[0]}; write predictions at the label resolution, or pass "
                f"resize_mismatched=true to resize predictions (nearest)"
            )
        logger.warning("%s: resized from %s to %s (nearest)", pred_path, pred.shape, gt.shape)
        pred = np.asarray(Image.fromarray(pred.astype(np.uint8)).resize(gt.shape[::-1], Image.NEAREST))
    pred = _check_ids(pred, pred_path, opts, "prediction")
    if opts.pred_ignore == "error" and (pred == opts.ignore_index).any():
        raise MetricsInputError(
            f"prediction {pred_path} contains the ignore id {opts.ignore_index} (strict mode pred_ignore=error); "
            f"use pred_ignore=wrong to count those pixels as errors"
        )
    return gt, pred


def evaluate_semantic_run(
    name: str,
    gt_dir: Path,
    pred_dir: Path,
    opts: SemanticOptions | None = None,
    image_dir: Path | None = None,
) -> RunResult:
    """Evaluate one run: validate and pair frames, accumulate per-frame confusion matrices."""
    opts = opts or SemanticOptions()
    gt_files = io.list_frames(gt_dir)
    if not gt_files:
        raise MetricsInputError(f"run {name}: no ground-truth PNGs in {gt_dir}")
    if not pred_dir.is_dir():
        raise MetricsInputError(
            f"run {name}: prediction folder {pred_dir} not found (expected PRED/{name}/<frame>.png)"
        )
    all_stems = [p.stem for p in gt_files]
    manifest = io.read_manifest(pred_dir, all_stems)
    label_pos = _label_positions(all_stems, manifest, opts, f"run {name}")
    label_stems = {all_stems[i] for i in label_pos}
    pairs = io.match_frames(
        gt_files, io.list_frames(pred_dir), where=f"run {name}", on_missing=opts.missing, optional=label_stems
    )
    index = {s: i for i, s in enumerate(all_stems)}
    positions = np.array([index[s] for s, _, _ in pairs], dtype=np.int64)
    src = None
    if manifest.source_frames is not None and opts.label_frames is None and opts.label_every is None:
        src = np.array([index.get(manifest.source_frames.get(s, s), i) for i, s in enumerate(all_stems)])
    distances = frames_since_label(len(all_stems), label_pos, src)[positions]

    result = RunResult(
        name=name,
        stems=[s for s, _, _ in pairs],
        positions=positions,
        is_label=np.isin(positions, label_pos),
        distances=distances,
        frame_cms=_confusions(name, pairs, opts),
        pred_is_gt_copy=np.array([p is None for _, _, p in pairs]),
        gt_paths=[g for _, g, _ in pairs],
        pred_paths=[p for _, _, p in pairs],
        image_dir=image_dir,
        pred_dir=pred_dir,
        prob_classes=manifest.prob_classes,
        include_label_frames=opts.include_label_frames,
    )
    _check_evaluated(result, opts)
    return result


def _confusions(name: str, pairs: list[tuple[str, Path, Path | None]], opts: SemanticOptions) -> np.ndarray:
    """``(N, C, C + 1)`` confusion matrices of the frame pairs, read in parallel and counted batch by batch."""
    cms: list[np.ndarray] = []
    bar = progress_bar(total=len(pairs), desc=f"{name} (metrics)", unit="frame")
    with ThreadPoolExecutor(max(1, opts.num_workers)) as pool, bar:
        for start in range(0, len(pairs), opts.batch_frames):
            batch = pairs[start : start + opts.batch_frames]
            bar.update(len(batch))
            arrays = list(pool.map(lambda t: _read_pair(t[1], t[2], opts), batch))
            shapes = {g.shape for g, _ in arrays}
            if len(shapes) == 1:  # one vectorised bincount for the whole batch
                gt = np.stack([g for g, _ in arrays])
                pred = np.stack([p for _, p in arrays])
                cms.append(frame_confusions(gt, pred, opts.num_classes, ignore_index=opts.ignore_index))
            else:
                cms.append(
                    np.stack(
                        [frame_confusions(g, p, opts.num_classes, ignore_index=opts.ignore_index) for g, p in arrays]
                    )
                )
    return np.concatenate(cms)


def _check_evaluated(result: RunResult, opts: SemanticOptions) -> None:
    """At least one frame left to score; says when annotated frames are scored as copies of their label."""
    name = result.name
    n_eval = int(result.evaluated.sum())
    if n_eval == 0:
        raise MetricsInputError(
            f"run {name}: every frame is an annotated frame; nothing left to evaluate "
            f"(set include_label_frames=true to score them)"
        )
    if opts.include_label_frames and result.pred_is_gt_copy.any():
        logger.warning(
            "run %s: %d annotated frame(s) have no prediction file and are scored as copies of their label "
            "(perfect by construction)",
            name,
            int(result.pred_is_gt_copy.sum()),
        )
    logger.info("run %s: %d frames evaluated, %d label frames", name, n_eval, int(result.is_label.sum()))


def evaluate_semantic(
    predictions: str | Path,
    ground_truth: str | Path,
    *,
    runs: Sequence[str] | None = None,
    opts: SemanticOptions | None = None,
) -> list[RunResult]:
    """Evaluate every run of ``ground_truth`` (a DATAROOT, one run folder or ``sample:driving``) that has
    predictions under ``predictions/<run>/``; ``runs`` restricts and requires the listed runs."""
    gt_root = io.resolve_root(ground_truth)
    pred_root = io.resolve_root(predictions)
    all_runs = io.semantic_runs(gt_root)
    if runs:
        unknown = [r for r in runs if r not in all_runs]
        if unknown:
            raise MetricsInputError(f"runs {unknown} not found in {gt_root}; available: {list(all_runs)[:10]}")
        selected = list(runs)
    else:
        selected = [r for r in all_runs if (pred_root / r).is_dir()]
        if not selected and (pred_root / "manifest.json").is_file() and len(all_runs) == 1:
            selected = list(all_runs)  # predictions folder is the run folder itself
        if not selected:
            raise MetricsInputError(
                f"no predictions found for the runs of {gt_root} ({list(all_runs)[:5]}) under {pred_root}; "
                f"expected {pred_root}/<run>/<frame>.png"
            )
        skipped = [r for r in all_runs if r not in selected]
        if skipped:
            logger.warning("runs without predictions are not evaluated: %s", skipped[:10])
    results = []
    for run in selected:
        pred_dir = (
            pred_root if (len(selected) == 1 and not (pred_root / run).is_dir()) else io.prediction_dir(pred_root, run)
        )
        gt_dir = all_runs[run]
        image_dir = gt_dir.parent / "image"
        results.append(evaluate_semantic_run(run, gt_dir, pred_dir, opts, image_dir if image_dir.is_dir() else None))
    return results


def load_frame(result: RunResult | DavisResult, stem: str) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(RGB frame or None, ground truth, prediction) of one evaluated frame, for overlays and galleries."""
    try:
        i = result.stems.index(stem)
    except ValueError:
        raise MetricsInputError(f"{result.name}: frame {stem!r} was not evaluated") from None
    gt = io.read_index_map(result.gt_paths[i], role="label")
    pred_path = result.pred_paths[i]
    pred = gt if pred_path is None else io.read_index_map(pred_path, role="prediction")
    if pred.shape != gt.shape:  # only reachable with resize_mismatched=true
        pred = np.asarray(Image.fromarray(pred.astype(np.uint8)).resize(gt.shape[::-1], Image.NEAREST))
    image_path = find_image(result.image_dir, stem)
    image = None
    if image_path is not None:
        image = np.asarray(load_rgb(image_path))
        if image.shape[:2] != gt.shape:
            image = np.asarray(Image.fromarray(image).resize(gt.shape[::-1], Image.BILINEAR))
    return image, gt, pred
