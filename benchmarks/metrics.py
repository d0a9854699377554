"""Speed of the metric kernels: vectorised confusion matrices (semantic IoU) and DAVIS J&F per frame.

Usage: ``python benchmarks/metrics.py [--quick] [--frames N] [--height H] [--width W]``; prints one JSON object with
the machine header (CPU model, matmul flags, threads, what ``precision: auto`` picks). The metrics are integer
counting on NumPy arrays: no precision choice and no matmul, hence no MFU.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from dino_lib.metrics.davis import evaluate_sequence
from dino_lib.metrics.semantic import frame_confusions
from dino_lib.runtime.perf import machine_header, peak_rss_mb


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small frames, few repeats (seconds)")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    args = ap.parse_args()
    h = args.height or (270 if args.quick else 1080)
    w = args.width or (480 if args.quick else 1920)
    n = args.frames or (8 if args.quick else 16)
    rng = np.random.default_rng(0)
    # piecewise-constant label maps (blocks of 8x8 px), 27 classes + ignore, a prediction with 20% of blocks changed
    blocks = rng.integers(0, 27, size=(n, h // 8 + 1, w // 8 + 1), dtype=np.uint8)
    gt = np.kron(blocks, np.ones((8, 8), np.uint8))[:, :h, :w]
    gt[:, : h // 20] = 255
    pred = gt.copy()
    flip = np.kron(rng.random(blocks.shape) < 0.2, np.ones((8, 8), bool))[:, :h, :w]
    pred[flip] = (pred[flip] + 1) % 27
    t_conf = _timed(lambda: frame_confusions(gt, pred, 27), 2 if args.quick else 5)

    # DAVIS: 480p-like frames with two objects (ellipses), prediction shifted by 3 px
    dh, dw = (120, 214) if args.quick else (480, 854)
    t = 5
    yy, xx = np.mgrid[:dh, :dw]
    davis_gt = np.zeros((t, dh, dw), np.uint8)
    for i in range(t):
        davis_gt[i][((yy - dh * 0.5) / (dh * 0.25)) ** 2 + ((xx - dw * 0.3 - 4 * i) / (dw * 0.15)) ** 2 < 1] = 1
        davis_gt[i][((yy - dh * 0.4) / (dh * 0.2)) ** 2 + ((xx - dw * 0.7) / (dw * 0.1)) ** 2 < 1] = 2
    davis_pred = np.roll(davis_gt, 3, axis=2)
    t_jf = _timed(lambda: evaluate_sequence(davis_gt, davis_pred), 1 if args.quick else 3)
    object_frames = 2 * (t - 2)
    print(
        json.dumps(
            {
                "benchmark": "metrics",
                "machine": machine_header("cpu"),
                "quick": args.quick,
                "confusion": {
                    "frames": n,
                    "shape_hw": [h, w],
                    "classes": 27,
                    "dtype": "uint8 ids -> int64 counts",
                    "seconds": round(t_conf, 4),
                    "frames_per_s": round(n / t_conf, 2),
                    "mpix_per_s": round(n * h * w / t_conf / 1e6, 1),
                },
                "davis_jf": {
                    "shape_hw": [dh, dw],
                    "object_frames": object_frames,
                    "seconds": round(t_jf, 4),
                    "ms_per_object_frame": round(1000 * t_jf / object_frames, 2),
                },
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
