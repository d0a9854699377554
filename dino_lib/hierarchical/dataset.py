"""Region-tensor data set with up-front validation (docs/hierarchical.md, Region data set and validation).

Every region is checked **before training** (shape ``[g*g, D]`` for the configured g and D, a plain tensor,
finite values, readable and not a Git LFS pointer); all problems are collected and reported together, each naming
its file with expected versus found. Slide-level exclusion keeps evaluation slides out of pretraining and the
seeded ``pct`` subset is the same on every rank (NumPy generator seeded by ``seed``, not Python's global
``random`` as in the reference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dino_lib.hierarchical.manifest import read_manifest
from dino_lib.hierarchical.tiling import parse_tile_name
from dino_lib.utils.io import safe_torch_load

__all__ = ["RegionDataError", "RegionFeatureDataset", "check_region_tensor", "load_feature_file", "read_slide_list"]

log = logging.getLogger(__name__)

_LFS_MAGIC = b"version https://git-lfs"
_MAX_LISTED = 10


class RegionDataError(ValueError):
    """Region tensors that cannot be trained on; the message names every bad file, expected versus found."""


def load_feature_file(path: Path) -> Any:
    """Read a region or stack file; a missing file, a Git LFS pointer or an unreadable pickle raise clearly."""
    if not path.is_file():
        raise RegionDataError(f"{path}: file not found (listed in the manifest but missing on disk)")
    with open(path, "rb") as fh:
        head = fh.read(len(_LFS_MAGIC))
    if head == _LFS_MAGIC:
        raise RegionDataError(f"{path}: is a Git LFS pointer, not a tensor; run 'git lfs pull' to fetch the file")
    try:
        return safe_torch_load(path)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported with the file name
        raise RegionDataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def _tensor_of(obj: Any) -> Any:
    return obj["features"] if isinstance(obj, dict) and "features" in obj else obj


def check_region_tensor(obj: Any, *, g: int, dim: int, name: str, check_finite: bool = True) -> torch.Tensor:
    """Return the ``[g*g, D]`` tensor in ``obj`` or raise :class:`RegionDataError` saying what is wrong.

    Recognised mistakes: a wrong grid (e.g. ``[196, 384]`` for g = 16), a non-square tile count, a wrong
    feature dimension, the transposed layout ``[D, g*g]``, a per-slide stack ``[M, g*g, D]``, non-finite values.
    """
    t = _tensor_of(obj)
    n = g * g
    expected = f"expected [{n}, {dim}] (g={g} tiles per side, D={dim})"
    if not isinstance(t, torch.Tensor):
        raise RegionDataError(f"{name}: holds {type(t).__name__}, {expected}; save a tensor or {{'features': tensor}}")
    shape = list(t.shape)
    if t.ndim == 3:
        raise RegionDataError(
            f"{name}: shape {shape} looks like a per-slide stack [M, g*g, D]; {expected}. "
            "Read stacks through a stacked manifest (stack_index column) instead of as one region"
        )
    if t.ndim != 2:
        raise RegionDataError(f"{name}: shape {shape}, {expected}")
    if shape == [dim, n] and dim != n:
        raise RegionDataError(f"{name}: shape {shape} is transposed; {expected}: save features.T (rows = tiles)")
    if shape[1] != dim:
        raise RegionDataError(
            f"{name}: feature dimension {shape[1]} (shape {shape}), {expected}; set region.input_dim to the tile "
            "encoder's width (384 ViT-S, 768 ViT-B, 1024) or re-extract"
        )
    if shape[0] != n:
        side = math.isqrt(shape[0])
        found = f"a {side}x{side} grid" if side * side == shape[0] else "not a square number of tiles"
        raise RegionDataError(
            f"{name}: {shape[0]} tiles ({found}), {expected}; the configured grid is region_size/tile_size. "
            "Fix g (region_size, tile_size) or drop regions of another size"
        )
    if not t.is_floating_point():
        raise RegionDataError(
            f"{name}: dtype {t.dtype}, expected floating-point features (float16/bfloat16/float32); integer or "
            "boolean tensors are not embeddings (wrong file, or labels saved instead of features): re-extract"
        )
    if check_finite and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise RegionDataError(f"{name}: {bad} non-finite values (NaN/Inf); re-extract this region or exclude it")
    return t


def read_slide_list(spec: str | Sequence[str] | None) -> set[str]:
    """Slide ids from a list or from a text file (one id per line, ``#`` comments)."""
    if spec is None:
        return set()
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"slide list file not found: {path}")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return {line for line in lines if line}
    return {str(s) for s in spec}


def _rows_from_folder(folder: Path) -> list[dict[str, Any]]:
    """Legacy layout: a folder of ``<slide>_<x>_<y>.pt`` (sorted; only ``*.pt``, never sub-folders)."""
    rows = []
    for path in sorted(p for p in folder.glob("*.pt") if p.is_file()):
        try:
            slide, x, y = parse_tile_name(path.stem)
        except ValueError:
            slide, x, y = path.stem, 0, 0
        rows.append({"region_id": path.stem, "slide_id": slide or path.stem, "x": x, "y": y,
                     "feature_path": path.name, "stack_index": -1})  # fmt: skip
    return rows


class RegionFeatureDataset(Dataset):
    """Region tensors from a manifest CSV or a folder of ``*.pt``, validated up front.

    Args:
        source: manifest CSV, or a folder (its ``manifest.csv`` if present, else every ``*.pt`` = legacy
            files ``[g*g, D]`` whose g is the configured one).
        g: tiles per region side; D: ``dim``.
        transform: called on each float32 ``[g*g, D]`` tensor (e.g. the region crops).
        exclude_slides: slide ids (or a text file) to leave out, e.g. evaluation folds.
        include_slides: if given, only these slides.
        pct: keep this fraction of regions (seeded, identical on every rank).
        seed: subsetting seed.
        check_finite: reject non-finite values at load.
        in_memory: keep the validated tensors (fp16) in memory instead of re-reading per item.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        g: int,
        dim: int,
        transform: Callable[[torch.Tensor], Any] | None = None,
        exclude_slides: str | Iterable[str] | None = None,
        include_slides: str | Iterable[str] | None = None,
        pct: float | None = None,
        seed: int = 0,
        check_finite: bool = True,
        in_memory: bool = True,
    ) -> None:
        source = Path(source)
        if source.is_dir() and (source / "manifest.csv").is_file():
            source = source / "manifest.csv"
        if source.is_dir():
            rows, self.root = _rows_from_folder(source), source
            where = f"{source} (glob '*.pt')"
        elif source.is_file():
            rows, self.root = read_manifest(source), source.parent
            where = str(source)
        else:
            raise RegionDataError(f"region data not found: {source} (give a manifest CSV or a folder of *.pt)")
        if not rows:
            raise RegionDataError(f"no region tensors in {where}; extract them first (python -m dino_lib.features)")
        self.g, self.dim, self.transform = g, dim, transform
        self.check_finite = check_finite
        rows = self._filter(rows, exclude_slides, include_slides, pct, seed, where)
        self._check_manifest(rows, where)
        self.rows = rows
        self.slide_ids = [str(r["slide_id"]) for r in rows]
        self.features = self._validate_all(keep=in_memory)

    def _filter(self, rows, exclude, include, pct, seed, where) -> list[dict[str, Any]]:  # noqa: ANN001
        excluded, included = read_slide_list(exclude), read_slide_list(include)
        kept = [r for r in rows if str(r["slide_id"]) not in excluded]
        if included:
            kept = [r for r in kept if str(r["slide_id"]) in included]
        if excluded or included:
            log.info("slide filter kept %d of %d regions (%d slides excluded)", len(kept), len(rows), len(excluded))
        if pct is not None:
            if not 0 < pct <= 1:
                raise ValueError(f"pct must be in (0, 1], found {pct}")
            k = max(1, int(round(pct * len(kept))))
            choice = np.sort(np.random.default_rng(seed).choice(len(kept), size=k, replace=False))
            kept = [kept[i] for i in choice]
        if not kept:
            raise RegionDataError(f"{where}: no regions left after slide exclusion/inclusion and pct")
        return kept

    def _check_manifest(self, rows: list[dict[str, Any]], where: str) -> None:
        """Metadata checks before any file is read: g, D and one encoder/normalisation."""
        for col, want in (("g", self.g), ("D", self.dim)):
            found = {int(r[col]) for r in rows if int(r.get(col) or 0) > 0}
            if found and found != {want}:
                raise RegionDataError(
                    f"{where}: manifest column {col} holds {sorted(found)} but the configuration expects {want}; "
                    f"set region.{'g' if col == 'g' else 'input_dim'} accordingly or re-extract"
                )
        for col in ("encoder_hash", "norm_mean", "norm_std"):
            found = {str(r[col]) for r in rows if r.get(col)}
            if len(found) > 1:
                raise RegionDataError(
                    f"{where}: regions come from different stage-1 encoders or normalisations ({col}: "
                    f"{sorted(found)}); mixing feature sets is not allowed — extract all regions with one encoder"
                )

    def _read(self, row: dict[str, Any], cache: dict[Path, Any] | None = None) -> torch.Tensor:
        path = self.root / row["feature_path"]
        obj = cache.get(path) if cache is not None else None
        if obj is None:
            obj = load_feature_file(path)
            if cache is not None and int(row["stack_index"]) >= 0:
                cache.clear()  # rows are sorted by slide: keep only the current stack
                cache[path] = obj
        name = str(path)
        if int(row["stack_index"]) >= 0:
            stack = _tensor_of(obj)
            index = int(row["stack_index"])
            if not isinstance(stack, torch.Tensor) or stack.ndim != 3 or index >= stack.shape[0]:
                found = tuple(stack.shape) if isinstance(stack, torch.Tensor) else type(stack).__name__
                raise RegionDataError(
                    f"{name}: expected a stack [M, {self.g**2}, {self.dim}] with row {index}, found {found}"
                )
            obj, name = stack[index], f"{name}[{index}]"
        return check_region_tensor(obj, g=self.g, dim=self.dim, name=name, check_finite=self.check_finite)

    def _validate_all(self, keep: bool) -> torch.Tensor | None:
        errors, tensors, cache = [], [], {}
        for row in self.rows:
            try:
                t = self._read(row, cache)
            except RegionDataError as err:
                errors.append(str(err))
                continue
            if keep:
                tensors.append(t.to(torch.float16))
        if errors:
            listed = "\n  ".join(errors[:_MAX_LISTED])
            more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
            raise RegionDataError(f"{len(errors)} of {len(self.rows)} region tensors are invalid:\n  {listed}{more}")
        return torch.stack(tensors) if keep else None  # (N, g*g, D) fp16

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        t = self.features[index] if self.features is not None else self._read(self.rows[index])
        if self.transform is not None and getattr(self.transform, "accepts_half", False):
            return self.transform(t), index  # e.g. RegionCrops: converts only the cropped tokens to float32
        t = t.float()  # fp16 on disk, float32 in memory
        return (self.transform(t) if self.transform is not None else t), index
