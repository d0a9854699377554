"""Label-propagation speed and memory (issue "Label propagation through videos", Performance).

Prints one JSON object:

* ``machine``: the machine header (CPU model and matmul flags, threads, what ``precision: auto`` picks);
* ``davis_854x480``: a synthetic 854 x 480 DAVIS-layout video propagated end to end with vit_small/16 (random
  weights: speed does not depend on the values), 7 context frames + the anchor, radius 12, top-5, on the CPU, in
  ``parity`` mode (always fp32, reference geometry 832 x 480) and in the default mode with ``precision: auto``
  (``default_<precision>``: fp32 on a CPU without native bf16; with bf16 the backbone runs in bf16 and neighbours
  are pre-selected in bf16 with exact fp32 re-scoring; default geometry); ``--precision`` adds other precisions:
  frames/s and the split into feature extraction, propagation and decoding/writing; plus the steady state: one
  frame's extraction and one full-context propagation step (features given), measured alternately, best of 3, and
  their ratio (target: < 0.2). ``targets.auto_not_slower_than_parity`` compares end-to-end frames/s;
* ``peak_2048x1024_p8``: peak resident memory of one propagation step at 2048 x 1024 with patch 8 (a 128 x 256
  grid, 384-d features, 8 contexts, 27 classes, decoding to native size), measured in a fresh process with the
  features given (target: < 4 GB). Set ``--extract-2048`` to also run the vit_small/8 backbone at that size
  (slow on CPUs).

Usage: ``python benchmarks/propagation.py [--quick] [--frames N] [--extract-2048] [--precision auto,bf16]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dino_lib.runtime import resolve_precision
from dino_lib.runtime.perf import benchmark_precisions, machine_header, measure_peaks, mfu_report, vit_forward_flops


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2 if sys.platform == "darwin" else 1024)


def _write_video(root: Path, n: int, hw: tuple[int, int] = (480, 854)) -> Path:
    from dino_lib.data.palettes import DAVIS_PALETTE

    rng = np.random.default_rng(0)
    h, w = hw
    base = Image.fromarray(rng.integers(0, 256, (h // 16 + 4, w // 16 + 4, 3), dtype=np.uint8))
    tex = np.asarray(base.resize((w + 64, h + 64), Image.BILINEAR))
    jpeg, ann = root / "JPEGImages" / "480p" / "bench", root / "Annotations" / "480p" / "bench"
    jpeg.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(tex[2 * t : 2 * t + h, 3 * t : 3 * t + w]).save(jpeg / f"{t:05d}.jpg", quality=90)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[100:300, 200:500], mask[250:450, 550:800] = 1, 2
    img = Image.fromarray(mask)
    img.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    img.save(ann / "00000.png")
    return root


def _steady_ratio(root: Path, protocol: str, precision: str, rounds: int = 3) -> tuple[float, float, int]:
    """Per-frame extraction and full-context propagation time, measured alternately (so both see the same machine
    load) and each taken as the best of ``rounds``: returns ``(extract_s, propagate_s, backbone_flops_per_frame)``."""
    from dino_lib.propagation.backbones import build_extractor
    from dino_lib.propagation.core import PropagationParams, propagate_frame
    from dino_lib.propagation.features import FeatureProvider
    from dino_lib.propagation.geometry import read_frame, resize_geometry
    from dino_lib.propagation.parity import davis_geometry

    frames = sorted((root / "JPEGImages" / "480p" / "bench").glob("*.jpg"))
    extractor = build_extractor("vit_small", patch_size=16)
    geo = (davis_geometry if protocol == "davis_parity" else resize_geometry)((480, 854), 16)
    provider = FeatureProvider(
        extractor,
        frames,
        geo,
        device=torch.device("cpu"),
        precision=precision,
        antialias=protocol != "davis_parity",
        round_uint8=protocol == "davis_parity",
    )
    feats = torch.cat([provider.extract([read_frame(f)]) for f in frames[:9]])  # (9, D, h, w), real features
    labels = torch.rand(8, 3, *geo.grid_hw, generator=torch.Generator().manual_seed(0))
    score_dtype = "bfloat16" if precision == "bf16" else "float32"  # as dino_lib.propagation.run chooses
    params = PropagationParams(topk=5, temperature=0.1, radius=12, score_dtype=score_dtype)
    best_e = best_p = float("inf")
    for r in range(rounds):
        t0 = time.perf_counter()
        provider.extract([read_frame(frames[r])])
        best_e = min(best_e, time.perf_counter() - t0)
        t0 = time.perf_counter()
        propagate_frame(feats[8], feats[:8], labels, params)
        best_p = min(best_p, time.perf_counter() - t0)
    return best_e, best_p, vit_forward_flops(extractor.model, geo.input_hw)


def _video_mode(root: Path, out: Path, protocol: str, precision: str, batch: int, peaks: dict) -> dict:
    from dino_lib.propagation import PropagationConfig, propagate

    cfg = PropagationConfig(
        data_path=str(root),
        dataset="davis",
        protocol=protocol,
        arch="vit_small",
        patch_size=16,
        precision=precision,
        batch_size=batch,
        output_dir=str(out),
        feature_cache=False,
        n_last_frames=7,
        size_mask_neighborhood=12,
        topk=5,
    )
    (result,) = propagate(cfg)
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    t = result.timings
    steady_e, steady_p, flops = _steady_ratio(root, protocol, precision)
    return {
        "protocol": protocol,
        "precision": precision,
        "frames": result.written,
        "input_hw": manifest["geometry"]["input_hw"],
        "grid_hw": manifest["geometry"]["grid_hw"],
        "frames_per_s": round(t["frames_per_s"], 3),
        "feature_extraction_s": round(t["feature_s"], 3),
        "propagation_s": round(t["propagation_s"], 3),
        "decode_write_s": round(t["decode_write_s"], 3),
        "extraction_s_per_frame": round(steady_e, 4),
        "propagation_s_per_frame_full_context": round(steady_p, 4),
        "propagation_over_extraction": round(steady_p / steady_e, 4),
        "extraction": mfu_report(flops / steady_e, precision, peaks),
    }


def _peak_2048(queue: mp.Queue, extract: bool) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from dino_lib.propagation.core import PropagationParams, l2_normalise, propagate_frame
    from dino_lib.propagation.geometry import decode_prediction
    from dino_lib.runtime import autocast, resolve_precision

    base = _rss_mb()
    grid, dim, classes = (128, 256), 384, 27
    g = torch.Generator().manual_seed(0)
    result = {
        "image_hw": [1024, 2048],
        "patch": 8,
        "grid_hw": list(grid),
        "dim": dim,
        "contexts": 8,
        "classes": classes,
        "rss_after_imports_mb": round(base, 1),
    }
    if extract:
        from dino_lib.propagation.backbones import build_extractor

        model = build_extractor("vit_small", patch_size=8)
        t0 = time.perf_counter()
        with autocast("cpu", resolve_precision("auto", "cpu")):
            feats0 = model(torch.randn(1, 3, 1024, 2048))
        result["extraction_s"] = round(time.perf_counter() - t0, 2)
        del feats0, model
    feats = l2_normalise(torch.randn(9, dim, *grid, generator=g), dim=1)
    labels = torch.rand(8, classes, *grid, generator=g)
    labels /= labels.sum(1, keepdim=True)
    t0 = time.perf_counter()
    soft = propagate_frame(feats[0], feats[1:], labels, PropagationParams(radius=12, topk=5))
    result["propagation_s"] = round(time.perf_counter() - t0, 2)
    decode_prediction(soft, list(range(classes)), (1024, 2048), void_id=255)
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    result["dense_affinity_would_need_gb"] = round(8 * (grid[0] * grid[1]) ** 2 * 4 / 2**30, 1)
    queue.put(result)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    parser.add_argument("--frames", type=int, default=None, help="video length (default 12, quick 9)")
    parser.add_argument("--extract-2048", action="store_true", help="also run vit_small/8 at 2048 x 1024")
    parser.add_argument("--precision", default="auto", help="default-mode precisions, e.g. auto,bf16 (default: auto)")
    args = parser.parse_args(argv)
    n = args.frames or (9 if args.quick else 12)
    precisions = benchmark_precisions(args.precision, "cpu")
    peaks = measure_peaks(precisions, "cpu")
    report: dict = {
        "benchmark": "propagation",
        "machine": machine_header("cpu", peaks),
        "arch": "vit_small/16 (random weights)",
        "n_last_frames": 7,
        "radius": 12,
        "topk": 5,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = _write_video(Path(tmp) / "DAVIS", n)
        modes = {"parity_fp32": _video_mode(root, Path(tmp) / "parity", "davis_parity", "fp32", 4, peaks)}
        for precision in precisions:
            modes[f"default_{precision}"] = _video_mode(root, Path(tmp) / precision, "default", precision, 4, peaks)
        report["davis_854x480"] = modes
    auto = report["davis_854x480"].get(f"default_{resolve_precision('auto', 'cpu')}")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_2048, args=(queue, args.extract_2048))
    proc.start()
    report["peak_2048x1024_p8"] = queue.get()
    proc.join()
    report["targets"] = {
        "propagation_under_20pct_of_extraction": all(
            m["propagation_over_extraction"] < 0.2 for m in report["davis_854x480"].values()
        ),
        "peak_2048x1024_p8_under_4gb": report["peak_2048x1024_p8"]["peak_rss_mb"] < 4096,
    }
    if auto is not None:  # absent when --precision leaves auto out
        parity_fps = modes["parity_fp32"]["frames_per_s"]
        report["targets"]["auto_over_parity_frames_per_s"] = round(auto["frames_per_s"] / parity_fps, 3)
        report["targets"]["auto_not_slower_than_parity"] = auto["frames_per_s"] >= parity_fps
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
