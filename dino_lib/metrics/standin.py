"""Demo stand-in predictions, so the metrics step runs without an earlier propagation step (CI, quick looks).

Two sources, both deterministic:

* ``propagation``: :func:`dino_lib.propagation.propagate` with a tiny **random** ViT (vit_tiny, 2 blocks) on the
  ground-truth frames, keyframes every N frames, soft probabilities saved. The scores measure a random network and
  mean nothing beyond "the pipeline works".
* ``corrupt``: the ground truth degraded on purpose: each frame's labels are shifted by as many pixels as frames since
  its keyframe (a drift that grows with distance), one rectangle per frame is relabelled, ignore pixels are filled
  with the nearest class; keyframes keep their label. Soft probabilities are a blurred one-hot of that prediction.

Both write ``PRED/<run>/<frame>.png`` plus ``manifest.json`` (``label_frames``, ``source_frames``, ``prob_classes``)
in the layout of :mod:`dino_lib.propagation.outputs`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from dino_lib.metrics import io
from dino_lib.utils.io import atomic_write, atomic_write_text

__all__ = ["make_standin_predictions", "corrupt_predictions"]

logger = logging.getLogger(__name__)

STANDIN_BANNER = (
    "DEMO STAND-IN PREDICTIONS ({source}): not a real model's output; pass predictions=<folder> to score one"
)


def _save_png(path: Path, ids: np.ndarray) -> None:
    atomic_write(path, lambda p: Image.fromarray(ids.astype(np.uint8), mode="L").save(p, format="PNG"))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write)


def corrupt_predictions(
    ground_truth: str | Path,
    out_root: str | Path,
    *,
    mode: Literal["semantic", "davis"] = "semantic",
    label_every: int = 8,
    seed: int = 0,
    ignore_index: int = 255,
    davis_resolution: str = "480p",
    save_probs: bool = True,
) -> Path:
    """Write corrupted-ground-truth predictions for every run/video of ``ground_truth`` (see module docstring)."""
    root = io.resolve_root(ground_truth)
    out_root = Path(out_root)
    videos = io.semantic_runs(root) if mode == "semantic" else io.davis_sequences(root, davis_resolution, None)
    rng = np.random.default_rng(seed)
    for name, label_dir in videos.items():
        files = io.list_frames(label_dir)
        stems = [f.stem for f in files]
        keys = list(range(0, len(files), label_every)) if mode == "semantic" else [0]
        run_dir = out_root / name
        classes: set[int] = set()
        preds = []
        for i, f in enumerate(files):
            gt = io.read_index_map(f, role="label").astype(np.int64)
            if mode == "davis":
                gt = np.where(gt == 255, 0, gt)
            key = max(k for k in keys if k <= i)
            d = i - key
            if d == 0:
                pred = gt.copy()
            else:
                void = gt == ignore_index
                if void.all():
                    pred = np.zeros_like(gt)
                else:  # fill ignore pixels with the nearest labelled pixel's class, then drift right by d pixels
                    idx = ndimage.distance_transform_edt(void, return_distances=False, return_indices=True)
                    pred = gt[tuple(idx)]
                pred = np.roll(pred, shift=min(d, gt.shape[1] // 4), axis=1)
                h, w = gt.shape
                y0, x0 = int(rng.integers(0, max(1, h // 2))), int(rng.integers(0, max(1, w // 2)))
                present = np.unique(pred)
                pred[y0 : y0 + h // 5, x0 : x0 + w // 5] = int(rng.choice(present))
            preds.append(pred)
            classes.update(int(c) for c in np.unique(pred) if c != ignore_index)
        prob_classes = sorted(classes)
        for stem, pred in zip(stems, preds):
            _save_png(run_dir / f"{stem}.png", pred)
            if save_probs:
                onehot = (pred[None] == np.asarray(prob_classes)[:, None, None]).astype(np.float32)  # (C, H, W)
                soft = ndimage.uniform_filter(onehot, size=(1, 9, 9), mode="nearest")
                soft /= np.maximum(soft.sum(axis=0, keepdims=True), 1e-6)
                _save_npy(run_dir / "probs" / f"{stem}.npy", soft.astype(np.float16))
        manifest = {
            "status": "complete",
            "standin": "corrupted ground truth (demo)",
            "label_frames": [stems[k] for k in keys],
            "source_frames": {s: stems[max(k for k in keys if k <= i)] for i, s in enumerate(stems)},
            "prob_classes": prob_classes if save_probs else None,
            "frames": stems,
        }
        atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1))
    return out_root


def make_standin_predictions(
    ground_truth: str,
    out_root: str | Path,
    *,
    mode: Literal["semantic", "davis"] = "semantic",
    source: Literal["auto", "propagation", "corrupt"] = "auto",
    label_every: int = 8,
    seed: int = 0,
    device: str = "auto",
    davis_resolution: str = "480p",
    runs: list[str] | None = None,
) -> tuple[Path, str]:
    """Make stand-in predictions under ``out_root``; returns (prediction root, source used)."""
    out_root = Path(out_root)
    if source in ("auto", "propagation"):
        try:
            from dino_lib.propagation import PropagationConfig, propagate
        except ImportError as err:
            if source == "propagation":
                raise
            logger.warning("dino_lib.propagation unavailable (%s); using corrupted ground truth", err)
        else:
            cfg = PropagationConfig(
                data_path=ground_truth,
                dataset="driving" if mode == "semantic" else "davis",
                davis_resolution=davis_resolution,
                runs=runs,
                output_dir=str(out_root),
                arch="vit_tiny",
                patch_size=16,
                model_kwargs={"depth": 2},
                refresh_label_interval=label_every,
                save_probs=True,
                seed=seed,
                device=device,
                feature_cache=False,
            )
            propagate(cfg)
            used = "tiny random ViT propagation"
            logger.warning(STANDIN_BANNER.format(source=used))
            return out_root, used
    corrupt_predictions(
        ground_truth, out_root, mode=mode, label_every=label_every, seed=seed, davis_resolution=davis_resolution
    )
    used = "corrupted ground truth"
    logger.warning(STANDIN_BANNER.format(source=used))
    return out_root, used
