"""Prediction files, the run manifest and the resume state.

Layout of one video (driving run or DAVIS video) under the output root::

    OUT/<run>/<frame stem>.png        indexed PNG, palette of the dataset, ids = global class / object ids
    OUT/<run>/probs/<frame stem>.npy  optional float16 (C, H, W); channel i = probability of id prob_classes[i]
    OUT/<run>/manifest.json           protocol, parameters, backbone + weights hash, frames, keyframes, timings
    OUT/<run>/.resume_state.pt        context state while a run is incomplete (removed when it completes)

Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dino_lib.config import from_dict
from dino_lib.propagation.config import PropagationConfig
from dino_lib.utils.io import atomic_torch_save, atomic_write, atomic_write_text, safe_torch_load

__all__ = [
    "write_index_png",
    "write_probs",
    "params_key",
    "read_manifest",
    "write_manifest",
    "config_of_predictions",
    "ResumeState",
]

MANIFEST = "manifest.json"
STATE = ".resume_state.pt"


def write_index_png(path: Path, ids: np.ndarray, palette: np.ndarray) -> None:
    """An indexed ("P") PNG of a uint8 id map with a 256-entry palette."""
    img = Image.fromarray(np.ascontiguousarray(ids.astype(np.uint8)))
    img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())  # L -> P
    atomic_write(path, lambda p: img.save(p, format="PNG"))


def write_probs(path: Path, probs: torch.Tensor, channel_ids: list[int], prob_classes: list[int]) -> None:
    """``(len(prob_classes), H, W)`` float16; compact channels scattered to their global ids, others zero."""
    out = np.zeros((len(prob_classes), *probs.shape[-2:]), dtype=np.float16)
    where = {c: i for i, c in enumerate(prob_classes)}
    for ch, gid in enumerate(channel_ids):
        if gid in where:
            out[where[gid]] = probs[ch].numpy().astype(np.float16)

    def save(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, out, allow_pickle=False)

    atomic_write(path, save)


def params_key(payload: dict[str, Any]) -> str:
    """Hash of everything that changes predictions (parameters, backbone, weights hash, geometry)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a broken manifest is treated as absent: nothing can be trusted, the run is recomputed


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_text(run_dir / MANIFEST, json.dumps(manifest, indent=1, default=str))


def config_of_predictions(out_dir: str | Path) -> PropagationConfig | None:
    """The :class:`PropagationConfig` a prediction folder was made with, read from its first run's manifest (the
    runs of one folder share it); ``None`` for folders without a readable manifest (e.g. another tool's outputs).
    Used to propagate the same clip again with the same backbone at random weights, for comparison."""
    for run_dir in sorted(p for p in Path(out_dir).iterdir() if p.is_dir()):
        manifest = read_manifest(run_dir)
        if manifest is not None and isinstance(manifest.get("parameters"), dict):
            return from_dict(PropagationConfig, manifest["parameters"], source=str(run_dir / MANIFEST))
    return None


class ResumeState:
    """The propagation context at frame ``next_index``: anchors and queue as frame indices plus label maps."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATE

    def save(self, key: str, next_index: int, channel_ids: list[int], anchors: list, queue: list) -> None:
        atomic_torch_save(
            {"key": key, "next_index": next_index, "channel_ids": channel_ids, "anchors": anchors, "queue": queue},
            self.path,
        )

    def load(self, key: str) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            state = safe_torch_load(self.path)
        except (ValueError, FileNotFoundError):
            return None
        return state if isinstance(state, dict) and state.get("key") == key else None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
