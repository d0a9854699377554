"""Reading images as 8-bit RGB: full decode, correct scaling of 16-bit and float modes, errors naming the file.

Pillow's ``convert("RGB")`` clips a 16-bit grey image (modes ``I;16*`` and ``I``) at 255 instead of scaling it,
so a microscopy or medical PNG/TIFF turns almost white without any error. :func:`to_rgb` scales by the range of
the mode instead:

* ``I;16``, ``I;16B``, ``I;16L`` and ``I`` with values in 0..65535: ``value * 255 / 65535``;
* ``I`` with negative or larger values: an error (no known range);
* ``F`` (32-bit float): values in 0..1 are scaled by 255, values in 0..255 are kept; other ranges are an error;
* every other mode (``1``, ``L``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ``LA``, ...) goes through Pillow, which
  already maps it to 8 bits (16-bit RGB PNGs are read by Pillow as 8-bit RGB).

:func:`load_rgb` decodes the whole file (``Image.load``), so a truncated file fails here with its name rather
than deep inside a data loader. Images larger than Pillow's decompression-bomb limit are refused with the limit
and how to raise it: ``DINO_LIB_MAX_IMAGE_PIXELS=<pixels>`` (``0`` = no limit) for trusted data.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageReadError", "load_rgb", "to_rgb", "probe_image", "check_images", "max_image_pixels"]

logger = logging.getLogger(__name__)

_MAX_PIXELS_VAR = "DINO_LIB_MAX_IMAGE_PIXELS"


class ImageReadError(ValueError):
    """An image file cannot be used; ``path`` is the file and the message says why and what to do."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def max_image_pixels() -> int | None:
    """The pixel limit applied to every image (Pillow's default unless ``DINO_LIB_MAX_IMAGE_PIXELS`` is set)."""
    raw = os.environ.get(_MAX_PIXELS_VAR)
    if raw is None:
        return Image.MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ImageReadError(f"{_MAX_PIXELS_VAR}={raw!r} is not an integer (use 0 for no limit)", Path(".")) from None
    return value or None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB copy of ``img``, scaling 16-bit and float modes by their range (see the module docstring)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img, dtype=np.int64)
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(f"32-bit integer image with values {lo}..{hi}: no known 8-bit scaling; convert it first")
        grey = np.round(values * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if finite.size != values.size or lo < 0 or hi > 255:
            raise ValueError(f"float image with values {lo:g}..{hi:g} (or NaN/Inf): expected 0..1 or 0..255")
        scale = 255.0 if hi <= 1.0 else 1.0
        grey = np.round(values * scale).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def _open(path: Path) -> Image.Image:
    """``Image.open`` (header only) with the pixel limit checked here, so the message can say how to raise it."""
    limit = max_image_pixels()
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # reading the header decodes nothing
    try:
        img = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if limit is not None and img.width * img.height > limit:
        size = f"{img.width} x {img.height} = {img.width * img.height} pixels"
        img.close()
        raise ImageReadError(
            f"{path}: image is too large ({size}, limit {limit}); if the file is trusted raise the limit with "
            f"{_MAX_PIXELS_VAR}=<pixels> (0 = no limit), or downscale it",
            path,
        )
    return img


def load_rgb(path: str | Path) -> Image.Image:
    """Fully decoded 8-bit RGB image of ``path``; any failure is an :class:`ImageReadError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found", path)
    try:
        with _open(path) as img:
            img.load()  # decode everything: a truncated file fails here
            return to_rgb(img)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read the image ({err}); remove or replace the file", path) from None


def probe_image(path: str | Path, decode: bool = True) -> str | None:
    """``None`` when ``path`` is usable, else the reason (``decode=False`` reads the header only)."""
    try:
        if decode:
            load_rgb(path)
        else:
            with _open(Path(path)) as img:
                img.verify()
    except ImageReadError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, ValueError...)
        return f"{path}: cannot read the image ({err})"
    return None


def check_images(
    files: Sequence[Path],
    *,
    decode_limit: int = 5000,
    time_budget_s: float = 120.0,
    total_budget_s: float | None = None,
) -> tuple[list[Path], list[str]]:
    """Check ``files`` (in order) before heavy work: full decode of the first ``decode_limit`` files within
    ``time_budget_s``, header read of the next ones, and nothing once ``total_budget_s`` is spent (None: no limit).
    Returns ``(bad files, reasons)``; files not decoded here are decoded when used (errors then name them)."""
    bad: list[Path] = []
    reasons: list[str] = []
    start = time.perf_counter()
    decoded = checked = 0
    for path in files:
        elapsed = time.perf_counter() - start
        if total_budget_s is not None and elapsed > total_budget_s:
            break
        decode = decoded < decode_limit and elapsed < time_budget_s
        decoded += decode
        checked += 1
        reason = probe_image(path, decode=decode)
        if reason is not None:
            bad.append(path)
            reasons.append(reason)
    if decoded < len(files):
        logger.info("images checked before the run: %d decoded, %d headers read, %d left to be decoded when used",
                    decoded, checked - decoded, len(files) - checked)  # fmt: skip
    return bad, reasons
