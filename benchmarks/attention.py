"""Attention-map speed (issue "Attention maps, interactive widgets and videos", Performance).

Prints one JSON object:

* ``machine``: the machine header (CPU model and matmul flags, threads, what ``precision: auto`` picks, peaks);
* ``maps``: images/s for CLS attention maps of all heads of the last block of vit_small/8 at 480 x 480 on the CPU,
  per precision (default: the one ``auto`` picks, plus fp32; ``--precision fp32,bf16`` to choose), random weights
  (speed does not depend on the values), best of ``--reps`` after a warm-up, with the matmul FLOPs of the blocks
  that run and the MFU against the matmul peak of that precision, or "no native support" where that peak is
  under 5% of fp32's (:func:`dino_lib.runtime.perf.mfu_report`);
* ``video``: frames/s of the whole video path (decode, maps, rendering, MP4 encoding) on the sample driving frames
  with vit_small/8, fp32.

Usage: ``python benchmarks/attention.py [--quick] [--size 480] [--reps 3] [--frames 16] [--precision auto]``
(``--quick``: 224 px, one timed run, 8 frames; for smoke tests, not for reported numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from dino_lib.attention import attention_maps, resolve_video_input, video_attention
from dino_lib.models import build_backbone
from dino_lib.runtime import autocast_dtype
from dino_lib.runtime.perf import (
    benchmark_precisions,
    machine_header,
    measure_peaks,
    mfu_report,
    peak_rss_mb,
    vit_forward_flops,
)
from dino_lib.viz.attention_run import write_attention_video


def _maps_speed(model: torch.nn.Module, size: int, batch: int, reps: int, precision: str) -> tuple[dict, float]:
    """The timing of one precision and its matmul FLOP/s (for the MFU, once the peaks are measured)."""
    x = torch.randn(batch, 3, size, size)
    auto = autocast_dtype(precision)
    attention_maps(model, x, dtype=auto)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        out = attention_maps(model, x, dtype=auto)
        best = min(best, time.perf_counter() - start)
    depth = len(model.blocks)
    # blocks 0..L-2 run fully; the last block only needs LN1 + qkv + the CLS row (negligible): count L-1 blocks
    flops = vit_forward_flops(model, (size, size), batch) * (depth - 1) / depth
    return {
        "images_per_s": round(batch / best, 4),
        "seconds_per_batch": round(best, 3),
        "maps_shape": list(out.maps.shape),
        "gflop_per_image": round(flops / batch / 1e9, 1),
    }, flops / best


def _video_speed(model: torch.nn.Module, frames: int, size: int | None) -> dict:
    source = resolve_video_input("sample:driving")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        maps = video_attention(model, source, patch_size=8, image_size=size, max_frames=frames, progress=False,
                               threshold=0.6)  # fmt: skip
        result = write_attention_video(maps, Path(tmp) / "video.mp4")
        seconds = time.perf_counter() - start
    return {
        "frames_per_s": round(result.frames / seconds, 3),
        "frames": result.frames,
        "frame_hw": list(result.size_hw),
        "seconds": round(seconds, 2),
        "source": "sample:driving (first run's image/ frames)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="224 px, 1 timed run, 8 video frames")
    parser.add_argument("--size", type=int, default=480, help="square input side for the maps benchmark")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass")
    parser.add_argument("--reps", type=int, default=3, help="timed runs (best kept)")
    parser.add_argument("--frames", type=int, default=16, help="video frames")
    parser.add_argument("--video-size", type=int, default=None, help="shorter side of video frames (default: native)")
    parser.add_argument("--precision", default=None, help="comma list of auto|fp32|bf16 for the maps (default: auto)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.reps, args.frames = 224, 1, 8
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.manual_seed(0)
    model = build_backbone("vit_small", patch_size=8).eval()
    precisions = benchmark_precisions(args.precision, "cpu")
    maps, rates = {}, {}
    for precision in precisions:
        maps[precision], rates[precision] = _maps_speed(model, args.size, args.batch, args.reps, precision)
    peaks = measure_peaks(precisions, "cpu")
    for precision in precisions:
        maps[precision].update(mfu_report(rates[precision], precision, peaks))
    result = {
        "benchmark": "attention",
        "machine": machine_header("cpu", peaks),
        "model": "vit_small_patch8 (random weights)",
        "input": [args.batch, 3, args.size, args.size],
        "maps": maps,
        "video": {**_video_speed(model, args.frames, args.video_size), "precision": "fp32"},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
