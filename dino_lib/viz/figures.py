"""Common steps of every figure: a title and a tight layout, deterministic PNG bytes, atomic PNG files."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from dino_lib.utils.io import atomic_write_bytes

__all__ = ["finish_figure", "figure_png", "save_figure"]


def finish_figure(fig: Figure, title: str | None = None) -> Figure:
    """Add ``title`` (when given) above the panels and tighten the layout; returns the figure."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (no timestamp metadata, so identical figures give identical bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG atomically."""
    return atomic_write_bytes(path, figure_png(fig, dpi))
