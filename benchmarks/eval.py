"""Evaluation speed: weighted k-NN on a large feature bank, and frozen feature extraction (CPU).

Prints one JSON object:
* ``knn``: seconds for the reference k list (10, 20, 100, 200) and for k = 20 alone, on ``n_train`` x ``n_test``
  L2-normalised features of dimension 384 and 1000 classes, with the peak resident memory of the process (the
  k-NN runs first, so the peak is the k-NN's: bank + one chunk of queries);
* ``extraction``: images/s of ``extract_features`` for vit_small/16 at 224 px per precision (default: the one
  ``precision: auto`` picks, plus fp32; ``--precision fp32,bf16`` to choose), with the MFU against the matmul
  peak of that precision or "no native support" (:func:`dino_lib.runtime.perf.mfu_report`);
* ``machine``: the machine header (CPU model and matmul flags, threads, what ``auto`` picks, peaks).

Usage::

    python benchmarks/eval.py            # 50k x 10k k-NN, 64 images per extraction run
    python benchmarks/eval.py --quick    # 5k x 1k k-NN, 16 images
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dino_lib.eval.knn import knn_classify, knn_evaluate
from dino_lib.features import extract_features
from dino_lib.models import build_backbone
from dino_lib.runtime.perf import (
    benchmark_precisions,
    machine_header,
    measure_peaks,
    mfu_report,
    peak_rss_mb,
    vit_forward_flops,
)


def bench_knn(n_train: int, n_test: int, dim: int, num_classes: int, chunk_mb: int) -> dict:
    g = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(n_train, dim, generator=g), dim=1)
    test = F.normalize(torch.randn(n_test, dim, generator=g), dim=1)
    train_labels = torch.randint(0, num_classes, (n_train,), generator=g)
    test_labels = torch.randint(0, num_classes, (n_test,), generator=g)
    rss_before = peak_rss_mb()
    budget = chunk_mb * 2**20
    timings = {}
    start = time.perf_counter()
    knn_classify(train, train_labels, test, test_labels, 20, 0.07, num_classes, max_chunk_bytes=budget)
    timings["k20"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()  # the reference k list in one similarity pass, as dino_lib.eval runs it
    knn_evaluate(train, train_labels, test, test_labels, (10, 20, 100, 200), 0.07, num_classes, max_chunk_bytes=budget)
    timings["k10_20_100_200"] = round(time.perf_counter() - start, 3)
    return {
        "n_train": n_train,
        "n_test": n_test,
        "dim": dim,
        "num_classes": num_classes,
        "chunk_budget_mb": chunk_mb,
        "seconds": timings,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_before_knn_mb": round(rss_before, 1),
        "dtype": "float32",
    }


def bench_extraction(n_images: int, batch_size: int, img: int, precisions: list[str]) -> dict:
    torch.manual_seed(0)
    model = build_backbone("vit_small", patch_size=16)
    flops = vit_forward_flops(model, (img, img), n_images)
    data = TensorDataset(torch.randn(n_images, 3, img, img), torch.zeros(n_images, dtype=torch.long))
    out = {
        "arch": "vit_small_patch16",
        "image_size": img,
        "batch_size": batch_size,
        "n_images": n_images,
    }
    seconds = {}
    for precision in precisions:
        extract_features(
            model,
            torch.utils.data.Subset(data, range(min(batch_size, n_images))),
            precision=precision,
            batch_size=batch_size,
            progress=False,
        )  # warm-up
        start = time.perf_counter()
        extract_features(model, data, precision=precision, batch_size=batch_size, progress=False)
        seconds[precision] = time.perf_counter() - start
    peaks = measure_peaks(precisions, "cpu")
    for precision, sec in seconds.items():
        out[precision] = {"images_per_s": round(n_images / sec, 2), **mfu_report(flops / sec, precision, peaks)}
    out["peaks"] = peaks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (5k x 1k k-NN, 16 images)")
    parser.add_argument("--chunk-mb", type=int, default=256, help="k-NN memory budget per query chunk")
    parser.add_argument("--precision", default=None, help="comma list of auto|fp32|bf16 for extraction (default: auto)")
    args = parser.parse_args()
    n_train, n_test, n_images = (5_000, 1_000, 16) if args.quick else (50_000, 10_000, 64)
    result = {"benchmark": "eval", "quick": args.quick}
    result["knn"] = bench_knn(n_train, n_test, 384, 1000, args.chunk_mb)
    extraction = bench_extraction(n_images, 16, 224, benchmark_precisions(args.precision, "cpu"))
    result["machine"] = machine_header("cpu", extraction.pop("peaks"))
    result["extraction"] = extraction
    print(json.dumps(result))


if __name__ == "__main__":
    main()
