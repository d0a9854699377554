"""The region-feature manifest: one CSV row per region tensor.

Columns (``MANIFEST_COLUMNS``): ``region_id``, ``slide_id``, ``x``, ``y`` (level-0 top-left, pixels),
``region_size`` and ``tile_size`` (pixels; ``g = region_size / tile_size`` per side), ``g``, ``D``,
``feature_path`` (relative to the manifest's folder), ``stack_index`` (-1 for one file per region, else the row
of a per-slide stack ``[M, g*g, D]``), ``encoder`` (stage-1 architecture), ``encoder_hash`` (weights content hash),
``norm_mean`` / ``norm_std`` (the normalisation applied to the tiles, ``"a;b;c"``), ``dtype`` and
``schema_version``. Rows are sorted by ``(slide_id, y, x)`` so every process reads the same order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dino_lib.utils.io import atomic_write_text

__all__ = ["MANIFEST_COLUMNS", "SCHEMA_VERSION", "read_manifest", "write_manifest", "format_stats", "parse_stats"]

SCHEMA_VERSION = 1
MANIFEST_COLUMNS = (
    "region_id",
    "slide_id",
    "x",
    "y",
    "region_size",
    "tile_size",
    "g",
    "D",
    "feature_path",
    "stack_index",
    "encoder",
    "encoder_hash",
    "norm_mean",
    "norm_std",
    "dtype",
    "schema_version",
)
_INT_COLUMNS = ("x", "y", "region_size", "tile_size", "g", "D", "stack_index", "schema_version")


def format_stats(values: Iterable[float]) -> str:
    """``(0.5, 0.5, 0.5) -> "0.5;0.5;0.5"`` (CSV-safe)."""
    return ";".join(f"{float(v):.6g}" for v in values)


def parse_stats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in str(text).split(";") if v != "")


def _sort_key(row: dict[str, Any]) -> tuple:
    return (str(row["slide_id"]), int(row["y"]), int(row["x"]), str(row["region_id"]))


def write_manifest(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (dicts with :data:`MANIFEST_COLUMNS`) sorted by slide, y, x, atomically."""
    rows = sorted(rows, key=_sort_key)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in MANIFEST_COLUMNS})
    return atomic_write_text(path, buffer.getvalue())


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest; integer columns are converted, missing optional columns get defaults.

    Raises:
        FileNotFoundError: no such file.
        ValueError: required columns missing (names the file and the columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"region manifest not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        required = {"region_id", "slide_id", "feature_path"}
        if not required <= set(header):
            raise ValueError(
                f"{path}: not a region manifest; required columns {sorted(required)}, found {header}. "
                "Write it with dino_lib.hierarchical.extraction (python -m dino_lib.features --config FILE)"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            row: dict[str, Any] = dict(raw)
            for col in _INT_COLUMNS:
                value = row.get(col)
                if value in (None, ""):
                    row[col] = -1 if col == "stack_index" else 0
                    continue
                try:
                    row[col] = int(value)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {line}: column {col!r} must be an integer, found {value!r}"
                    ) from None
            rows.append(row)
    return sorted(rows, key=_sort_key)
