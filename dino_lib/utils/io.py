"""Atomic file writes (checkpoints, text, PNGs of arrays) and safe checkpoint reading.

Outputs are written to a temporary name in the destination folder and renamed, so a crash or a kill never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_bytes",
    "png_bytes",
    "write_png",
    "atomic_torch_save",
    "safe_torch_load",
    "is_safetensors_file",
]


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask needs setting it; restore at once
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; outputs get the usual mode (0o666 minus the umask) instead,
# so that results in shared run directories stay readable by colleagues and job schedulers.
_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 array or an ``(H, W)`` [0, 1] map."""
    from PIL import Image

    buf = io.BytesIO()
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(buf, format="png")
    return buf.getvalue()


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write an array (see :func:`png_bytes`) as a PNG file atomically."""
    return atomic_write_bytes(path, png_bytes(array))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda p: torch.save(obj, p))


# Types found in legacy DINO/MAE/HIPT checkpoints (pickled argparse.Namespace in "args", NumPy scalars in
# "epoch"/"best_acc"). They are admitted explicitly; everything else is refused by weights_only=True.
_LEGACY_SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,
    np.dtype,
    np.ndarray,
    np.float64,
    np.float32,
    np.int64,
    np.int32,
    type(np.dtype("float64")),
    type(np.dtype("float32")),
    type(np.dtype("int64")),
    type(np.dtype("int32")),
]
try:  # NumPy >= 2 moved the reconstruct helpers under numpy._core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[attr-defined]
    from numpy._core.multiarray import scalar as _np_scalar  # type: ignore[attr-defined]

    _LEGACY_SAFE_GLOBALS += [_np_reconstruct, _np_scalar]
except ImportError:  # pragma: no cover - NumPy 1.x
    pass


def is_safetensors_file(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file (an 8-byte little-endian header length, then a JSON header)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= Path(path).stat().st_size - 8


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True`` plus an explicit allow-list for legacy pickles.

    A ``.safetensors`` file (recognised by its header, whatever its suffix) is read with the ``safetensors``
    package instead and comes back as a plain dict of tensors.

    Raises:
        FileNotFoundError: the path does not exist (nothing is ever downloaded instead).
        ValueError: the file holds objects outside the allow-list, or is not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (weights are only read from local files; give the path of a .pth, .pt, "
            ".bin or .safetensors file)"
        )
    if is_safetensors_file(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except Exception as err:
            raise ValueError(f"could not read {path} as a safetensors file: {err}") from None
    data = path.read_bytes()
    try:
        with torch.serialization.safe_globals(_LEGACY_SAFE_GLOBALS):
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError subclasses
        raise ValueError(
            f"could not load {path} as a checkpoint with weights_only=True: {err}. Only tensors, plain Python "
            "data, argparse.Namespace and NumPy scalars/arrays are admitted (.safetensors files are read as "
            "well); re-save the file with plain data, e.g. torch.save(model.state_dict(), path)."
        ) from None
