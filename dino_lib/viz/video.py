"""Write a sequence of RGB frames as an MP4 (PyAV, H.264) or an animated GIF (Pillow), atomically.

Generic: any producer of ``(H, W, 3)`` uint8 frames (segmentation overlays, attention maps) can use
:func:`write_video`. Frames are streamed to the MP4 encoder one at a time, so memory does not grow with the video
length. H.264 with yuv420p needs even width and height: odd sizes are padded by one replicated row/column. The file
is encoded under a temporary name and renamed, so a crash never leaves a truncated video under the final name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from dino_lib.utils.io import atomic_write

__all__ = ["write_video", "even_pad", "as_rgb_uint8"]

logger = logging.getLogger(__name__)

_VIDEO_SUFFIXES = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def as_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    a = np.asarray(frame)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) frame, found shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[..., :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255)
        else:
            a = np.clip(a, 0, 255)
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def even_pad(frame: np.ndarray) -> np.ndarray:
    """Pad an (H, W, 3) frame to even H and W by replicating the last row/column (H.264 4:2:0 needs even sizes)."""
    h, w = frame.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return frame


def _checked(frames: Iterable[np.ndarray], path: Path) -> Iterator[np.ndarray]:
    shape = None
    for i, f in enumerate(frames):
        f = as_rgb_uint8(f)
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(
                f"{path}: frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is {shape[1]}x{shape[0]}; "
                f"all frames of a video must have the same size"
            )
        yield f


def _write_mp4(frames: Iterator[np.ndarray], tmp: Path, fmt: str, fps: float, codec: str, crf: int) -> int:
    import av

    n = 0
    with av.open(str(tmp), mode="w", format=fmt) as container:
        stream = None
        for f in frames:
            f = even_pad(f)
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = f.shape[1], f.shape[0]
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "medium"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
            n += 1
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return n


def _write_gif(frames: Iterator[np.ndarray], tmp: Path, fps: float, loop: int) -> int:
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    duration = max(int(round(1000.0 / fps)), 20)  # GIF delays are in 10 ms units; browsers clamp < 20 ms
    images[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration,
        loop=loop,
        optimize=False,
        disposal=1,
    )
    return len(images)


def write_video(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float = 10.0,
    *,
    codec: str = "libx264",
    crf: int = 20,
    loop: int = 0,
) -> Path:
    """Encode ``frames`` into ``path``: ``.mp4``/``.mov``/``.mkv`` through PyAV, ``.gif`` through Pillow.

    Args:
        frames: iterable of (H, W, 3) uint8 (or float [0, 1], or grey) frames, all of the same size; a generator is
            consumed lazily for video containers.
        path: output file; its suffix selects the container.
        fps: frames per second (> 0).
        codec: video codec for MP4 (``libx264`` by default; ``mpeg4`` when H.264 is not available in the PyAV build).
        crf: H.264 constant rate factor (lower = better quality).
        loop: GIF loop count (0 = forever).

    Returns:
        The written path.

    Raises:
        ValueError: unsupported suffix, no frames, frames of different sizes, fps <= 0.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, found {fps}")
    suffix = path.suffix.lower()
    checked = _checked(frames, path)
    count = 0

    def encode(tmp: Path) -> None:
        nonlocal count
        if suffix == ".gif":
            count = _write_gif(checked, tmp, fps, loop)
        else:
            import av

            chosen = codec if codec in av.codecs_available else "mpeg4"
            if chosen != codec:
                logger.warning("codec %s not available in this PyAV build; using %s", codec, chosen)
            count = _write_mp4(checked, tmp, _VIDEO_SUFFIXES[suffix], fps, chosen, crf)

    if suffix != ".gif" and suffix not in _VIDEO_SUFFIXES:
        raise ValueError(f"{path}: unsupported video suffix {suffix!r}; use .mp4, .mov, .mkv or .gif")
    atomic_write(path, encode)
    logger.info("wrote %s (%d frames, %.3g fps)", path, count, fps)
    return path
