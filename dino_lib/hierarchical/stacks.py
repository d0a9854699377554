"""Per-slide stacked layout ``[M, g*g, D]`` with a coordinate table.

Data sets with many regions are far easier to move and read as one file per slide. A stack file holds
``{"features": (M, g*g, D) fp16, "coords": (M, 2) int64 (x, y), "region_ids": [...], ...metadata}`` and the
stacked manifest (``slides/manifest.csv``) lists every region with its stack file and ``stack_index``, so
:class:`~dino_lib.hierarchical.dataset.RegionFeatureDataset` reads either layout.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from dino_lib.hierarchical.dataset import _tensor_of, load_feature_file
from dino_lib.hierarchical.manifest import read_manifest, write_manifest
from dino_lib.utils.io import atomic_torch_save, atomic_write_text

__all__ = ["write_slide_stacks"]

log = logging.getLogger(__name__)


def write_slide_stacks(manifest: str | Path, out_dir: str | Path | None = None) -> Path:
    """Stack the per-region files of ``manifest`` into one file per slide; returns the stacked manifest path.

    Regions keep the manifest order (row-major over the slide: y, then x). A ``coords.csv`` beside the stacks
    lists ``slide_id, stack_index, region_id, x, y``.
    """
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    out_dir = Path(out_dir) if out_dir is not None else manifest.parent / "slides"
    by_slide: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if int(row["stack_index"]) >= 0:
            raise ValueError(f"{manifest}: already a stacked manifest (stack_index set); stack per-region manifests")
        by_slide[str(row["slide_id"])].append(row)
    stacked_rows, coords_lines = [], ["slide_id,stack_index,region_id,x,y"]
    for slide, slide_rows in sorted(by_slide.items()):
        tensors = [_tensor_of(load_feature_file(manifest.parent / r["feature_path"])) for r in slide_rows]
        features = torch.stack([t.to(torch.float16) for t in tensors])  # (M, g*g, D)
        coords = torch.tensor([[int(r["x"]), int(r["y"])] for r in slide_rows], dtype=torch.int64)  # (M, 2)
        first = slide_rows[0]
        payload = {
            "features": features,
            "coords": coords,
            "region_ids": [str(r["region_id"]) for r in slide_rows],
            "slide_id": slide,
            **{k: first[k] for k in ("region_size", "tile_size", "g", "D", "encoder", "encoder_hash")},
            "norm_mean": first["norm_mean"],
            "norm_std": first["norm_std"],
        }
        path = out_dir / f"{slide}.pt"
        atomic_torch_save(payload, path)
        for i, r in enumerate(slide_rows):
            stacked_rows.append({**r, "feature_path": path.name, "stack_index": i})
            coords_lines.append(f"{slide},{i},{r['region_id']},{r['x']},{r['y']}")
    atomic_write_text(out_dir / "coords.csv", "\n".join(coords_lines) + "\n")
    stacked = write_manifest(stacked_rows, out_dir / "manifest.csv")
    log.info("wrote %d slide stacks (%d regions) to %s", len(by_slide), len(stacked_rows), out_dir)
    return stacked
