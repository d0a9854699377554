"""Stand-in predictions for demos and CI: something for ``python -m dino_lib.metrics`` to score without running the
``propagate_segmentation`` step first. Not part of the library: the metrics step only scores real prediction folders.

Two sources, both deterministic:

* ``propagation``: :func:`dino_lib.propagation.propagate` with a tiny **random** ViT (vit_tiny, 2 blocks) on the
  ground-truth frames, keyframes every N frames, soft probabilities saved. The scores measure a random network and
  mean nothing beyond "the pipeline works".
* ``corrupt``: the ground truth degraded on purpose: each frame's labels are shifted by as many pixels as frames since
  its keyframe (a drift that grows with distance), one rectangle per frame is relabelled, ignore pixels are filled
  with the nearest class; keyframes keep their label. Soft probabilities are a blurred one-hot of that prediction.

Both write ``PRED/<run>/<frame>.png`` plus ``manifest.json`` (``label_frames``, ``source_frames``, ``prob_classes``)
in the layout of :mod:`dino_lib.propagation.outputs`.

Usage (from the repository root)::

    python tools/demo/standin.py --out runs/standin --source corrupt
    python -m dino_lib.metrics --config params/segmentation_metrics/ci.yaml predictions=runs/standin

Tests load it from its path (``runpy.run_path("tools/demo/standin.py")``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
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


def _label_folders(root: Path, mode: str, davis_resolution: str) -> dict[str, Path]:
    """Run (semantic) or video (DAVIS) name -> its folder of ground-truth label PNGs."""
    return io.semantic_runs(root) if mode == "semantic" else io.davis_sequences(root, davis_resolution, None)


def _read_label(path: Path, mode: str) -> np.ndarray:
    gt = io.read_index_map(path, role="label").astype(np.int64)
    return np.where(gt == 255, 0, gt) if mode == "davis" else gt  # DAVIS: the void border is background


def _corrupt_frame(gt: np.ndarray, distance: int, rng: np.random.Generator, ignore_index: int) -> np.ndarray:
    """``gt`` with ignore pixels filled from the nearest class, drifted right and one rectangle relabelled."""
    void = gt == ignore_index
    if void.all():
        pred = np.zeros_like(gt)
    else:
        idx = ndimage.distance_transform_edt(void, return_distances=False, return_indices=True)
        pred = gt[tuple(idx)]
    pred = np.roll(pred, shift=min(distance, gt.shape[1] // 4), axis=1)  # the drift grows with the distance
    h, w = gt.shape
    y0, x0 = int(rng.integers(0, max(1, h // 2))), int(rng.integers(0, max(1, w // 2)))
    pred[y0 : y0 + h // 5, x0 : x0 + w // 5] = int(rng.choice(np.unique(pred)))
    return pred


def _soft_probs(pred: np.ndarray, prob_classes: Sequence[int]) -> np.ndarray:
    """A blurred one-hot of ``pred`` over ``prob_classes``, normalised per pixel: (C, H, W) float16."""
    onehot = (pred[None] == np.asarray(prob_classes)[:, None, None]).astype(np.float32)  # (C, H, W)
    soft = ndimage.uniform_filter(onehot, size=(1, 9, 9), mode="nearest")
    soft /= np.maximum(soft.sum(axis=0, keepdims=True), 1e-6)
    return soft.astype(np.float16)


def _write_run(
    run_dir: Path, stems: list[str], preds: list[np.ndarray], keys: list[int], ignore_index: int, save_probs: bool
) -> None:
    """Write one run's PNGs, soft probabilities and ``manifest.json``."""
    prob_classes = sorted({int(c) for pred in preds for c in np.unique(pred) if c != ignore_index})
    for stem, pred in zip(stems, preds):
        _save_png(run_dir / f"{stem}.png", pred)
        if save_probs:
            _save_npy(run_dir / "probs" / f"{stem}.npy", _soft_probs(pred, prob_classes))
    manifest = {
        "status": "complete",
        "standin": "corrupted ground truth (demo)",
        "label_frames": [stems[k] for k in keys],
        "source_frames": {s: stems[max(k for k in keys if k <= i)] for i, s in enumerate(stems)},
        "prob_classes": prob_classes if save_probs else None,
        "frames": stems,
    }
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1))


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
    out_root = Path(out_root)
    rng = np.random.default_rng(seed)
    for name, label_dir in _label_folders(io.resolve_root(ground_truth), mode, davis_resolution).items():
        files = io.list_frames(label_dir)
        keys = list(range(0, len(files), label_every)) if mode == "semantic" else [0]
        preds = []
        for i, path in enumerate(files):
            gt = _read_label(path, mode)
            distance = i - max(k for k in keys if k <= i)
            preds.append(gt.copy() if distance == 0 else _corrupt_frame(gt, distance, rng, ignore_index))
        _write_run(out_root / name, [f.stem for f in files], preds, keys, ignore_index, save_probs)
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
    """Make stand-in predictions under ``out_root``; returns (prediction root, source used).

    ``auto`` propagates with a tiny random ViT and falls back to the corrupted ground truth when
    :mod:`dino_lib.propagation` cannot be imported.
    """
    out_root = Path(out_root)
    used = "corrupted ground truth"
    if source in ("auto", "propagation"):
        try:
            from dino_lib.propagation import PropagationConfig, propagate
        except ImportError as err:
            if source == "propagation":
                raise
            logger.warning("dino_lib.propagation unavailable (%s); using corrupted ground truth", err)
        else:  # a tiny random ViT (vit_tiny/16, 2 blocks) propagated over the ground truth's frames
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
    if used == "corrupted ground truth":
        corrupt_predictions(
            ground_truth, out_root, mode=mode, label_every=label_every, seed=seed, davis_resolution=davis_resolution
        )
    logger.warning(STANDIN_BANNER.format(source=used))
    return out_root, used


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="prediction folder to write (PRED)")
    parser.add_argument("--ground-truth", default="sample:driving", help="DATAROOT, DAVIS root or sample:<name>")
    parser.add_argument("--mode", choices=("semantic", "davis"), default="semantic")
    parser.add_argument("--source", choices=("auto", "propagation", "corrupt"), default="auto")
    parser.add_argument("--label-every", type=int, default=8, help="keyframe interval (semantic runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="device of the propagation source (auto, cpu, cuda)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = {key: getattr(args, key) for key in ("mode", "source", "label_every", "seed", "device")}
    out, used = make_standin_predictions(args.ground_truth, args.out, **options)
    print(f"stand-in predictions ({used}) in {out}")
    return out


if __name__ == "__main__":
    main()
