"""Batched per-frame feature extraction with an on-disk cache.

Features are extracted for ``batch_size`` frames at a time, L2-normalised (propagation only uses cosine
similarities) and optionally stored as fp16 ``.npy`` files under ``cache_dir/<extractor key>/<frame key>.npy``.
The extractor key hashes the backbone description (arch, weights hash, layer, stride, normalisation) and the
pre-processing (input size, resize rule, dtype); the frame key hashes the frame's absolute path, size and mtime.
Sweeps over k, τ, radius and context therefore re-use the features of earlier runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dino_lib.propagation.backbones import FeatureExtractor
from dino_lib.propagation.core import l2_normalise
from dino_lib.propagation.geometry import FrameGeometry, frames_to_tensor, read_frame
from dino_lib.runtime import autocast
from dino_lib.utils.io import atomic_write

__all__ = ["FeatureCache", "FeatureProvider", "extractor_key"]

logger = logging.getLogger(__name__)


def extractor_key(extractor: FeatureExtractor, preprocessing: dict[str, Any]) -> str:
    """Stable key of (backbone, weights, layer, normalisation, pre-processing)."""
    payload = json.dumps({"backbone": extractor.describe(), "pre": preprocessing}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a temporary name
        np.save(fh, arr, allow_pickle=False)


class FeatureCache:
    """fp16 (or fp32) ``.npy`` feature files keyed by extractor and frame file."""

    def __init__(self, root: Path, key: str, dtype: str = "float16") -> None:
        self.dir = Path(root) / key
        self.dtype = np.dtype(dtype)
        self.hits = 0
        self.misses = 0

    def path(self, frame: Path) -> Path:
        stat = frame.stat()
        ident = f"{frame.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.dir / f"{frame.stem}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.npy"

    def load(self, frame: Path) -> torch.Tensor | None:
        path = self.path(frame)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError):  # a corrupt entry is recomputed, never trusted
            logger.warning("feature cache entry %s is unreadable; recomputing", path)
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(arr.astype(np.float32))

    def store(self, frame: Path, features: torch.Tensor) -> None:
        arr = features.detach().cpu().numpy().astype(self.dtype)
        atomic_write(self.path(frame), lambda p: _save_npy(p, arr))


class FeatureProvider:
    """Normalised ``(D, h, w)`` features of frame ``i`` of a video, extracted in batches, cached on request.

    Args:
        extractor: the backbone.
        frames: frame files in video order.
        geometry: the video's geometry (input size).
        device: where the backbone runs and features are returned.
        precision: a resolved precision (``fp32``, ``bf16``, ``fp16``) for the backbone; features are returned in
            float32.
        batch_size: frames per forward pass.
        cache: optional :class:`FeatureCache`.
        antialias, round_uint8: frame resizing options (parity mode turns antialiasing off and rounds).
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        frames: Sequence[Path],
        geometry: FrameGeometry,
        *,
        device: torch.device,
        precision: str = "fp32",
        batch_size: int = 8,
        cache: FeatureCache | None = None,
        antialias: bool = True,
        round_uint8: bool = False,
    ) -> None:
        self.extractor = extractor.to(device)
        self.frames = list(frames)
        self.geometry = geometry
        self.device = device
        self.precision = precision
        self.batch_size = max(1, batch_size)
        self.cache = cache
        self.antialias = antialias
        self.round_uint8 = round_uint8
        self._held: dict[int, torch.Tensor] = {}
        self.seconds = 0.0
        self.extracted = 0

    def extract(self, images: list[np.ndarray]) -> torch.Tensor:
        """Normalised features ``(B, D, h, w)`` of decoded RGB frames."""
        x = frames_to_tensor(
            images,
            self.geometry.input_hw,
            self.extractor.mean,
            self.extractor.std,
            antialias=self.antialias,
            round_uint8=self.round_uint8,
        ).to(self.device)
        with autocast(self.device, self.precision):
            feats = self.extractor(x)  # (B, D, h, w)
        if tuple(feats.shape[-2:]) != tuple(self.geometry.grid_hw):
            raise RuntimeError(f"backbone returned a {tuple(feats.shape[-2:])} grid, expected {self.geometry.grid_hw}")
        return l2_normalise(feats, dim=1)

    def _fill(self, start: int) -> None:
        start_t = time.perf_counter()
        self._held = {}
        indices = list(range(start, min(start + self.batch_size, len(self.frames))))
        todo = []
        for i in indices:
            cached = self.cache.load(self.frames[i]) if self.cache is not None else None
            if cached is not None and tuple(cached.shape[-2:]) == tuple(self.geometry.grid_hw):
                self._held[i] = cached.to(self.device)
            else:
                todo.append(i)
        if todo:
            feats = self.extract([read_frame(self.frames[i]) for i in todo])
            for i, f in zip(todo, feats):
                self._held[i] = f
                if self.cache is not None:
                    self.cache.store(self.frames[i], f)
            self.extracted += len(todo)
        self.seconds += time.perf_counter() - start_t

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index not in self._held:
            self._fill(index)
        return self._held[index]
