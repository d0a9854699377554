"""Feature caches on disk.

* :func:`cached_extract`: extraction keyed by the backbone's weights hash, the transform, the dataset listing and
  the feature layout. A second run with the same key loads the file; changing the checkpoint, the transform, the
  files or the layout changes the key, so stale features are never reused. The metadata stored in the file is
  compared again on load (a file whose metadata does not match is refused and recomputed).
* :func:`dump_reference_features` / :func:`load_reference_features`: the reference's ``--dump_features`` layout
  (``trainfeat.pth``, ``testfeat.pth``, ``trainlabels.pth``, ``testlabels.pth``) plus a ``meta.json`` describing
  where they came from; loading with ``expected_meta`` refuses a dump made with other weights or pre-processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from dino_lib.features.extract import ExtractedFeatures, extract_features
from dino_lib.features.transforms import describe_transform
from dino_lib.models.loading import state_dict_hash
from dino_lib.runtime import is_main_process, resolve_device, resolve_precision
from dino_lib.utils.io import atomic_torch_save, atomic_write_text, safe_torch_load

logger = logging.getLogger(__name__)

__all__ = [
    "CacheMismatchError",
    "feature_cache_meta",
    "cache_key",
    "cached_extract",
    "dump_reference_features",
    "load_reference_features",
]

_LAYOUT_KEYS = ("n_last_blocks", "avgpool", "interleave", "precision")


class CacheMismatchError(ValueError):
    """Stored features were made with other weights, pre-processing, data or layout."""


def _listing(dataset: Dataset) -> str:
    if hasattr(dataset, "listing_hash"):
        return dataset.listing_hash()  # type: ignore[no-any-return]
    samples = getattr(dataset, "samples", None)
    if samples is None:
        raise ValueError(
            f"{type(dataset).__name__} has neither listing_hash() nor samples; the cache cannot tell its content"
        )
    digest = hashlib.sha256()
    for path, label in samples:
        stat = Path(path).stat()
        digest.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def feature_cache_meta(backbone: nn.Module, dataset: Dataset, **layout: Any) -> dict[str, Any]:
    """What the features depend on: weights hash, transform, dataset listing, layout."""
    transform = getattr(dataset, "transform", None)
    return {
        "weights_hash": state_dict_hash(backbone),
        "backbone": getattr(backbone, "backbone_name", type(backbone).__name__),
        "transform": describe_transform(transform) if transform is not None else "",
        "listing": _listing(dataset),
        "num_items": len(dataset),  # type: ignore[arg-type]
        **{key: layout.get(key) for key in _LAYOUT_KEYS},
    }


def cache_key(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]


def cached_extract(
    backbone: nn.Module, dataset: Dataset, *, cache_dir: str | Path | None, name: str = "features", **kwargs: Any
) -> ExtractedFeatures:
    """:func:`extract_features` through a disk cache ``cache_dir/<name>-<key>.pt`` (no cache when ``None``).

    Args:
        backbone, dataset: as for :func:`extract_features` (the dataset's ``transform`` is part of the key).
        cache_dir: cache folder; created when needed.
        name: file-name prefix (e.g. ``train`` / ``val``).
        **kwargs: passed to :func:`extract_features`.
    """
    if cache_dir is None:
        return extract_features(backbone, dataset, desc=name, **kwargs)
    # The key holds the precision actually used (``auto`` resolved on this device): bf16 and fp32 features differ.
    device = resolve_device(kwargs.get("device", "cpu"))
    kwargs["precision"] = resolve_precision(kwargs.get("precision", "fp32"), device)
    layout = {"n_last_blocks": 1, "avgpool": False, "interleave": False}
    layout.update({key: kwargs[key] for key in _LAYOUT_KEYS if key in kwargs})
    meta = feature_cache_meta(backbone, dataset, **layout)
    path = Path(cache_dir) / f"{name}-{cache_key(meta)}.pt"
    if path.is_file():
        stored = safe_torch_load(path)
        if stored.get("meta") == meta:
            logger.info("re-using cached features %s", path)
            return ExtractedFeatures(stored["features"], stored["labels"], torch.arange(len(stored["labels"])))
        logger.warning("%s: stored metadata does not match; recomputing", path)
    result = extract_features(backbone, dataset, desc=name, **kwargs)
    if is_main_process():
        atomic_torch_save({"features": result.features, "labels": result.labels, "meta": meta}, path)
        logger.info("cached features in %s", path)
    return result


def dump_reference_features(
    folder: str | Path, train: ExtractedFeatures, test: ExtractedFeatures, meta: dict[str, Any] | None = None
) -> Path:
    """Write the reference's four files (``--dump_features``) and ``meta.json``."""
    folder = Path(folder)
    atomic_torch_save(train.features, folder / "trainfeat.pth")
    atomic_torch_save(test.features, folder / "testfeat.pth")
    atomic_torch_save(train.labels, folder / "trainlabels.pth")
    atomic_torch_save(test.labels, folder / "testlabels.pth")
    atomic_write_text(folder / "meta.json", json.dumps(meta or {}, indent=1, sort_keys=True))
    return folder


def load_reference_features(
    folder: str | Path, expected_meta: dict[str, Any] | None = None
) -> tuple[ExtractedFeatures, ExtractedFeatures]:
    """Read a ``--dump_features`` folder (``--load_features``); refuse it when ``meta.json`` contradicts
    ``expected_meta`` (a dump without ``meta.json``, e.g. from the reference, is accepted with a warning)."""
    folder = Path(folder)
    names = ["trainfeat.pth", "testfeat.pth", "trainlabels.pth", "testlabels.pth"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {missing}; expected the four files written by --dump_features")
    meta_path = folder / "meta.json"
    if expected_meta is not None:
        if not meta_path.is_file():
            logger.warning("%s has no meta.json; cannot check which weights/pre-processing made it", folder)
        else:
            stored = json.loads(meta_path.read_text())
            diff = {k: (stored.get(k), v) for k, v in expected_meta.items() if stored.get(k) != v}
            if diff:
                raise CacheMismatchError(
                    f"{folder}: features were made with other settings (stored, expected): {diff}; delete the "
                    "folder or point load_features elsewhere"
                )
    train_f, test_f, train_l, test_l = (safe_torch_load(folder / n) for n in names)
    return (
        ExtractedFeatures(train_f, train_l.long(), torch.arange(len(train_l))),
        ExtractedFeatures(test_f, test_l.long(), torch.arange(len(test_l))),
    )
