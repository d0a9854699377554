"""Multi-crop augmentation speed: the per-image PIL pipeline against the batched one (``augmentation: batched``).

What the training data path does per batch, timed round-robin (best of ``--repeats`` batches after a warm-up):

* ``pil``: ``SeededCrops(ImageDataset(..., DataAugmentationDINO))[i]`` for every image of the batch, then the default
  collation (decode + every crop with PIL/torchvision v2 per image);
* ``batched``: the same dataset with ``MultiCropParams`` (decode, base image, the random decisions) and collation,
  then ``BatchedMultiCrop`` on the device (``dataset_s`` and ``apply_s`` report the two halves).

Cases: ``digits`` (sample:digits, 32 px, the small-data recipe: 2 x 32 + 4 x 16 px crops) and ``photos``
(sample:images, 256-320 px photos, the paper's 2 x 224 + 8 x 96 px crops on a 224 px base), batch 32. Unless
``--quick``, also one epoch of ``params/pretrain/small_data.yaml`` with each setting (epochs 1, knn_every 0,
num_workers 0, ``--epoch-threads`` threads; the settings alternate, best of ``--epoch-repeats``). Prints one JSON
object headed by the machine
(:func:`dino_lib.runtime.perf.machine_header`).

    python benchmarks/augment.py [--quick] [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import default_collate

from dino_lib.data.augment import DataAugmentationDINO
from dino_lib.data.batch_augment import BatchedMultiCrop
from dino_lib.data.crop_params import MultiCropParams, crop_specs
from dino_lib.data.image_folder import ImageDataset, SeededCrops
from dino_lib.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from dino_lib.data.samples import resolve_data_path
from dino_lib.runtime import resolve_device
from dino_lib.runtime.perf import machine_header

REPO = Path(__file__).resolve().parents[1]
AUGS = ("pil", "batched")
CASES = {
    "digits": ("sample:digits/train", dict(global_crops_scale=(0.5, 1.0), local_crops_scale=(0.2, 0.5),
                                           local_crops_number=4, global_crops_size=32, local_crops_size=16)),
    "photos": ("sample:images", dict(global_crops_scale=(0.4, 1.0), local_crops_scale=(0.05, 0.4),
                                     local_crops_number=8, global_crops_size=224, local_crops_size=96)),
}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _case(name: str, batch: int, repeats: int, device: torch.device) -> dict[str, object]:
    """Seconds per batch of both pipelines on ``name`` (best of ``repeats``, batches drawn round-robin)."""
    path, kw = CASES[name]
    root = resolve_data_path(path)
    specs = crop_specs(**kw)
    pil = SeededCrops(ImageDataset(root, DataAugmentationDINO(**kw), check="off"))
    params = SeededCrops(ImageDataset(root, MultiCropParams(specs, kw["global_crops_size"]), check="off"))
    apply = BatchedMultiCrop(specs, IMAGENET_MEAN, IMAGENET_STD)
    n = len(pil)
    times: dict[str, list[float]] = {"pil": [], "batched_dataset": [], "batched_apply": []}

    def timed(key: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times[key].append(time.perf_counter() - start)
        return out

    for r in range(repeats + 1):
        idx = [(r * batch + i) % n for i in range(batch)]
        timed("pil", lambda idx=idx: default_collate([pil[i] for i in idx]))
        collated = timed("batched_dataset", lambda idx=idx: default_collate([params[i] for i in idx]))
        timed("batched_apply", lambda batch=collated[0]: apply(batch, device))  # type: ignore[index]
    best = {k: min(v[1:]) for k, v in times.items()}  # the first round is the warm-up
    batched = best["batched_dataset"] + best["batched_apply"]
    return {
        "data_path": path,
        "crops": f"2 x {kw['global_crops_size']} + {kw['local_crops_number']} x {kw['local_crops_size']}",
        "batch": batch,
        "pil": {"seconds_per_batch": round(best["pil"], 4), "images_per_s": round(batch / best["pil"], 1)},
        "batched": {
            "seconds_per_batch": round(batched, 4),
            "dataset_s": round(best["batched_dataset"], 4),
            "apply_s": round(best["batched_apply"], 4),
            "images_per_s": round(batch / batched, 1),
        },
        "speedup": round(best["pil"] / batched, 2),
    }


def _epoch_seconds(augmentation: str, threads: int) -> dict[str, float]:
    """One epoch of params/pretrain/small_data.yaml (no k-NN monitor, data loaded in the main process)."""
    from dino_lib.config import load_config
    from dino_lib.train import TrainConfig, train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        over = {"epochs": 1, "knn_every": 0, "num_workers": 0, "augmentation": augmentation, "output_dir": tmp}
        cfg = load_config(TrainConfig, REPO / "params" / "pretrain" / "small_data.yaml", over)
        start = time.perf_counter()
        record = train(cfg).last_epoch or {}
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "epoch_seconds": round(float(record.get("seconds", 0.0)), 2),
        "images_per_s": round(float(record.get("images_per_s", 0.0)), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits only, batch 8, 2 repeats, no epoch (seconds)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the augmentation timings")
    ap.add_argument("--epoch-threads", type=int, default=2, help="torch threads for the epoch timings")
    ap.add_argument("--epoch-repeats", type=int, default=2, help="epochs per setting (alternated; best kept)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="where the batched crops are made (cpu, cuda, auto)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batch, repeats = (8, 2) if args.quick else (args.batch, args.repeats)
    cases = ["digits"] if args.quick else list(CASES)
    report: dict[str, object] = {
        "benchmark": "augment",
        "machine": machine_header(device),
        "quick": args.quick,
        "cases": {name: _case(name, batch, repeats, device) for name in cases},
    }
    if not args.quick:  # alternated, best of --epoch-repeats: load from other processes hits both alike
        runs = [(aug, _epoch_seconds(aug, args.epoch_threads)) for _ in range(args.epoch_repeats) for aug in AUGS]
        best = {aug: min((r for a, r in runs if a == aug), key=lambda r: r["epoch_seconds"]) for aug in AUGS}
        report["small_data_epoch"] = {"threads": args.epoch_threads, "repeats": args.epoch_repeats, **best}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
