"""A synthetic oracle video for propagation tests.

A world of ``cell x cell`` pixel squares, each with its own random colour and a class id, slides to the right by
``shift`` cells per frame. :class:`OracleExtractor` turns the colour of each cell into a high-dimensional code, so
features encode position exactly (equal codes only for the same world cell): propagation must reproduce the labels
of every cell that was visible in the anchor frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dino_lib.propagation.backbones import FeatureExtractor, _Spec


class OracleExtractor(FeatureExtractor):
    """Average colour of each ``stride`` cell -> ``sin(W c + b)`` code (64-d); same colour <=> same code."""

    def __init__(self, stride: int = 8, dim: int = 64) -> None:
        gen = torch.Generator().manual_seed(0)
        super().__init__(
            nn.Identity(), _Spec("dino", "oracle", stride, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), -1), None, "oracle"
        )
        self.register_buffer("proj", torch.randn(dim, 3, generator=gen) * 40.0)
        self.register_buffer("phase", torch.rand(dim, 1, 1, generator=gen) * 6.283)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = F.avg_pool2d(x, self.stride)  # (B, 3, h, w) in [0, 1]
        return torch.sin(torch.einsum("dc,bchw->bdhw", self.proj, colour) + self.phase)


def make_world(h_cells: int, w_cells: int, n_frames: int, shift: int, classes: int = 4, seed: int = 0):
    """World colours ``(H, W + shift·T, 3)`` per cell and class ids per cell (some ignore 255)."""
    rng = np.random.default_rng(seed)
    width = w_cells + shift * n_frames
    colours = rng.integers(0, 256, size=(h_cells, width, 3), dtype=np.uint8)
    ids = rng.integers(0, classes, size=(h_cells, width)).astype(np.uint8)
    ids[0, :3] = 255  # a few ignore cells
    return colours, ids


def frame_at(world: np.ndarray, t: int, w_cells: int, shift: int, cell: int) -> np.ndarray:
    """Frame ``t`` shows world columns ``[start, start + w_cells)`` moving right: content shifts by +shift cells."""
    start = world.shape[1] - w_cells - shift * t
    view = world[:, start : start + w_cells]
    return np.repeat(np.repeat(view, cell, axis=0), cell, axis=1)


def write_driving_run(
    root: Path,
    *,
    name: str = "run1",
    n_frames: int = 6,
    h_cells: int = 5,
    w_cells: int = 7,
    shift: int = 1,
    cell: int = 8,
    seed: int = 0,
) -> Path:
    """DATAROOT/<name>/{image,segmentation}; frames as lossless PNG. Returns DATAROOT."""
    colours, ids = make_world(h_cells, w_cells, n_frames, shift, seed=seed)
    run = root / name
    (run / "image").mkdir(parents=True, exist_ok=True)
    (run / "segmentation").mkdir(parents=True, exist_ok=True)
    for t in range(n_frames):
        Image.fromarray(frame_at(colours, t, w_cells, shift, cell)).save(run / "image" / f"{t:05d}.png")
        lab = frame_at(ids[..., None], t, w_cells, shift, cell)[..., 0]
        Image.fromarray(lab).save(run / "segmentation" / f"{t:05d}.png")
    return root


def expected_label(root: Path, name: str, t: int) -> np.ndarray:
    return np.asarray(Image.open(root / name / "segmentation" / f"{t:05d}.png"))
