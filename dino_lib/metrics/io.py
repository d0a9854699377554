"""Reading ground truth, predictions, soft probabilities and run manifests, with validation.

Layouts:

* driving runs: ground truth ``DATAROOT/<run>/segmentation/<frame>.png`` (a single run folder holding
  ``segmentation/`` is accepted too); predictions ``PRED/<run>/<frame>.png`` (the fork's ``PRED/<run>/prediction/``
  is accepted), optional ``PRED/<run>/manifest.json`` and ``PRED/<run>/probs/<frame>.npy`` (fp16, (C, H, W)).
* DAVIS: ground truth ``ROOT/Annotations/<resolution>/<video>/<frame>.png``; results ``PRED/<video>/<frame>.png``.

Every check fails with a :class:`MetricsInputError` that names the file, what was expected, what was found and the
fix; lenient behaviour (evaluate the intersection of frames, remap unknown ids to ignore, resize a mismatched
prediction) is always an explicit opt-in and logs a warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from dino_lib.data.samples import resolve_data_path
from dino_lib.data.video_sets import VideoSetError, davis_video_folders, driving_run_folders, natural_key

__all__ = [
    "MetricsInputError",
    "natural_key",
    "list_frames",
    "resolve_root",
    "read_index_map",
    "check_ids",
    "semantic_runs",
    "davis_sequences",
    "prediction_dir",
    "match_frames",
    "RunManifest",
    "read_manifest",
    "read_probs",
]

logger = logging.getLogger(__name__)

OnMissing = Literal["error", "intersect"]
UnknownIds = Literal["error", "ignore"]


class MetricsInputError(VideoSetError):
    """Bad evaluation input; the message names the file, what was expected and found, and how to fix it."""


def list_frames(folder: Path, suffixes: Sequence[str] = (".png",)) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes``, natural-sorted by stem; duplicate stems are an error."""
    if not folder.is_dir():
        raise MetricsInputError(f"folder not found: {folder}")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")),
        key=lambda p: natural_key(p.stem),
    )
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise MetricsInputError(f"{folder}: duplicate frame names {dup[:5]} with different extensions; keep one each")
    return files


def resolve_root(spec: str | Path) -> Path:
    """``sample:<name>[/sub]`` through :func:`dino_lib.data.samples.resolve_data_path`, anything else as a path
    that must exist."""
    path = resolve_data_path(spec)
    if not path.exists():
        raise MetricsInputError(f"path not found: {path} (give an existing folder or a 'sample:<name>' source)")
    return path


def read_index_map(path: Path, *, role: str = "label") -> np.ndarray:
    """Read an index PNG (mode L, P, I;16 or 1) as a 2-D integer array of ids.

    An RGB/RGBA image is accepted only when its channels are identical (a grey index map saved as RGB, with a
    warning); a colour-coded RGB label is an error that points to a colour-table decoder.
    """
    if not path.is_file():
        raise MetricsInputError(f"{role} file not found: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except OSError as err:
        raise MetricsInputError(f"{role} file {path} cannot be read as an image: {err}") from None
    if mode in ("L", "P", "1"):
        return arr.astype(np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return arr.astype(np.int64)
    if mode in ("RGB", "RGBA") and arr.ndim == 3:
        rgb = arr[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
            logger.warning(
                "%s: %s stored as %s with identical channels; using the first channel as ids", path, role, mode
            )
            return rgb[..., 0].astype(np.uint8)
        raise MetricsInputError(
            f"{role} {path} is a colour (mode {mode}) image, expected a single-channel index PNG (mode L or P) whose "
            f"pixel values are class ids; convert colour-coded labels to ids first with a colour-table decoder "
            f"(map each palette RGB to its class index) and save them as mode L/P PNGs"
        )
    raise MetricsInputError(f"{role} {path}: unsupported image mode {mode}; expected an index PNG (mode L or P)")


def check_ids(
    arr: np.ndarray,
    path: Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    unknown_ids: UnknownIds = "error",
    role: str = "label",
) -> np.ndarray:
    """Validate that ids lie in ``0 .. num_classes-1`` or equal ``ignore_index``; ``unknown_ids="ignore"`` remaps."""
    bad = (arr >= num_classes) & (arr != ignore_index)
    if arr.min(initial=0) < 0:
        bad |= arr < 0
    if not bad.any():
        return arr
    ids = np.unique(arr[bad])
    if unknown_ids == "ignore":
        logger.warning(
            "%s: %s ids %s are not classes; remapped to ignore %d", path, role, ids[:10].tolist(), ignore_index
        )
        out = arr.copy()
        out[bad] = ignore_index
        return out
    raise MetricsInputError(
        f"{role} {path} contains ids {ids[:10].tolist()} (expected 0..{num_classes - 1} or the ignore id "
        f"{ignore_index}); fix num_classes, or pass unknown_ids=ignore to treat them as ignore"
    )


def semantic_runs(gt_root: Path) -> dict[str, Path]:
    """Map run name -> ground-truth folder for ``DATAROOT/<run>/segmentation/`` (or one run folder itself)."""
    folders = driving_run_folders(
        gt_root, marker="segmentation", error=MetricsInputError, hint="; for DAVIS data set mode=davis"
    )
    return {f.name: f.labels for f in folders}


def davis_sequences(
    davis_root: Path, resolution: str = "480p", imageset: str | None = "2017/val.txt"
) -> dict[str, Path]:
    """Map video -> ``Annotations/<resolution>/<video>``; the image set list decides the videos when it exists."""
    folders = davis_video_folders(
        davis_root,
        resolution=resolution,
        listing=imageset,
        required="Annotations",
        error=MetricsInputError,
        hint=" (for driving runs set mode=semantic)",
    )
    return {f.name: f.labels for f in folders}


def prediction_dir(pred_root: Path, run: str) -> Path:
    """``PRED/<run>/`` or, for outputs in the fork's layout, ``PRED/<run>/prediction/``."""
    run_dir = pred_root / run
    if (run_dir / "prediction").is_dir() and not any(run_dir.glob("*.png")):
        return run_dir / "prediction"
    return run_dir


def match_frames(
    gt_files: Sequence[Path],
    pred_files: Sequence[Path],
    *,
    where: str,
    on_missing: OnMissing = "error",
    optional: set[str] | frozenset[str] = frozenset(),
) -> list[tuple[str, Path, Path | None]]:
    """Pair ground-truth and prediction frames by stem, in ground-truth order.

    Args:
        gt_files, pred_files: natural-sorted files.
        where: run/video name for messages.
        on_missing: ``"error"`` (default) raises with a table of what is missing; ``"intersect"`` evaluates the
            frames present in both with a warning.
        optional: stems whose prediction may be missing (annotated frames, which are excluded by default).

    Returns:
        (stem, gt_path, pred_path or None) per ground-truth frame; None only for missing optional stems.
    """
    preds = {p.stem: p for p in pred_files}
    gts = {p.stem for p in gt_files}
    missing_pred = [p.stem for p in gt_files if p.stem not in preds and p.stem not in optional]
    extra_pred = [s for s in preds if s not in gts]
    if missing_pred or extra_pred:
        table = (
            f"  missing predictions: {len(missing_pred)} (first: {missing_pred[:5]})\n"
            f"  predictions without ground truth: {len(extra_pred)} (first: {extra_pred[:5]})"
        )
        if on_missing == "error" and missing_pred:
            pred_dir = pred_files[0].parent if pred_files else "(no prediction files)"
            raise MetricsInputError(
                f"{where}: predictions and ground truth do not match (predictions in {pred_dir}):\n{table}\n"
                f"  fix: re-run the propagation for the missing frames, or pass missing=intersect to evaluate only the "
                f"frames present in both"
            )
        logger.warning("%s: frames differ between predictions and ground truth:\n%s", where, table)
    out: list[tuple[str, Path, Path | None]] = []
    for g in gt_files:
        p = preds.get(g.stem)
        if p is None and g.stem not in optional:
            continue  # on_missing == "intersect"
        out.append((g.stem, g, p))
    if not out:
        raise MetricsInputError(f"{where}: no frame has both a prediction and a ground-truth label")
    return out


@dataclasses.dataclass
class RunManifest:
    """What the evaluation needs from a propagation run manifest (``PRED/<run>/manifest.json``).

    Attributes:
        label_frames: stems of the annotated (key)frames used as anchors, or None when unknown.
        source_frames: stem -> stem of the keyframe each frame was propagated from, or None.
        prob_classes: class id of each channel of ``probs/<frame>.npy``, or None.
        raw: the whole manifest.
    """

    label_frames: list[str] | None = None
    source_frames: dict[str, str] | None = None
    prob_classes: list[int] | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)


def _first(d: dict[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def read_manifest(run_dir: Path, stems: Sequence[str] | None = None) -> RunManifest:
    """Read ``run_dir/manifest.json`` (missing file -> empty manifest). Integer frame entries are positions in
    ``stems`` (the natural-sorted frame list) and are converted to stems."""
    path = run_dir / "manifest.json"
    if not path.is_file() and (run_dir.parent / "manifest.json").is_file() and run_dir.name == "prediction":
        path = run_dir.parent / "manifest.json"
    if not path.is_file():
        return RunManifest()
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MetricsInputError(f"{path} is not valid JSON: {err}; re-run the propagation to rewrite it") from None
    if not isinstance(raw, dict):
        raise MetricsInputError(f"{path}: expected a JSON object, found {type(raw).__name__}")

    def as_stem(v: Any) -> str:
        if isinstance(v, int) and stems is not None:
            if not 0 <= v < len(stems):
                raise MetricsInputError(f"{path}: frame index {v} outside the {len(stems)} frames of the run")
            return stems[v]
        return Path(str(v)).stem

    labels = _first(raw, ("label_frames", "keyframes", "anchor_frames", "annotated_frames"))
    sources = _first(raw, ("source_frames", "keyframe_of", "propagated_from", "source_keyframe"))
    classes = _first(raw, ("prob_classes", "channel_classes", "probs_classes", "class_ids"))
    src: dict[str, str] | None = None
    if isinstance(sources, dict):
        src = {Path(k).stem: as_stem(v) for k, v in sources.items()}
    elif isinstance(sources, list) and stems is not None and len(sources) == len(stems):
        src = {s: as_stem(v) for s, v in zip(stems, sources)}
    return RunManifest(
        label_frames=[as_stem(v) for v in labels] if labels is not None else None,
        source_frames=src,
        prob_classes=[int(c) for c in classes] if classes is not None else None,
        raw=raw,
    )


def read_probs(run_dir: Path, stem: str, prob_classes: Sequence[int] | None = None) -> np.ndarray | None:
    """Soft probabilities ``run_dir/probs/<stem>.npy`` (or ``.npz`` key ``probs``) as float32 (C, H, W), or None."""
    for path in (run_dir / "probs" / f"{stem}.npy", run_dir / "probs" / f"{stem}.npz"):
        if path.is_file():
            data = np.load(path, allow_pickle=False)
            arr = data["probs"] if isinstance(data, np.lib.npyio.NpzFile) else data
            if arr.ndim != 3:
                raise MetricsInputError(f"{path}: expected (C, H, W) probabilities, found shape {arr.shape}")
            if prob_classes is not None and len(prob_classes) != arr.shape[0]:
                raise MetricsInputError(
                    f"{path}: {arr.shape[0]} channels but the manifest lists {len(prob_classes)} channel classes"
                )
            arr = arr.astype(np.float32)
            bad = int((~np.isfinite(arr)).sum())
            if bad:
                logger.warning(
                    "%s: %d non-finite probability values (NaN/Inf) in frame %s; the propagation run is damaged "
                    "(re-run it); they are shown grey in its confidence figure",
                    path,
                    bad,
                    stem,
                )
            return arr
    return None
