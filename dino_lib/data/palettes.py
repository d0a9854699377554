"""Colour palettes for label maps: the 27-class driving palette and the DAVIS (PASCAL VOC) palette.

The driving palette is the 27 hand-written colours of the driving fork, padded to 256 entries with a grey ramp.
The class names are inferred from Cityscapes / Mapillary Vistas colour conventions; the fork
names no classes. Classes 3 and 4 share a colour, so overlays cannot tell them apart.

The DAVIS palette is the PASCAL VOC colour map that the DINO reference downloads at run time.
It is computed here with the usual bit-interleaving rule instead of being downloaded or pasted.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DRIVING_CLASSES",
    "DRIVING_PALETTE",
    "DRIVING_PALETTE_256",
    "DRIVING_IGNORE_ID",
    "DAVIS_PALETTE",
    "PALETTES",
    "davis_palette",
    "get_palette",
    "pil_palette",
]

#: Ignore id of the driving label maps (masked by the metrics).
DRIVING_IGNORE_ID = 255

# (name, RGB) per class id 0..26. Names are an inference, "class_19"/"class_25" are unknown.
_DRIVING_TABLE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("animal", (165, 42, 42)),
    ("car", (0, 0, 142)),
    ("vehicle", (0, 0, 142)),  # same colour as "car" in the fork
    ("bus", (0, 60, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
    ("traffic_sign", (220, 220, 0)),
    ("traffic_light", (250, 170, 30)),
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("curb", (196, 196, 196)),
    ("parking", (250, 170, 160)),
    ("curb_cut", (170, 170, 170)),
    ("crosswalk", (140, 140, 200)),
    ("lane_marking", (255, 255, 255)),
    ("bike_lane", (128, 64, 255)),
    ("building", (70, 70, 70)),
    ("class_19", (197, 231, 158)),
    ("fence", (190, 153, 153)),
    ("banner", (255, 255, 128)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (64, 170, 64)),
    ("sky", (70, 130, 180)),
    ("class_25", (78, 99, 171)),
    ("unlabelled", (0, 0, 0)),  # counted as a normal class by the fork's mean IoU
)

#: Class names for ids 0..26 (inferred, see the module docstring).
DRIVING_CLASSES: tuple[str, ...] = tuple(name for name, _ in _DRIVING_TABLE)

#: (27, 3) uint8 colours of the driving classes.
DRIVING_PALETTE: np.ndarray = np.array([rgb for _, rgb in _DRIVING_TABLE], dtype=np.uint8)


def _grey_padded(palette: np.ndarray) -> np.ndarray:
    """Pad a (K, 3) palette to 256 entries with the grey ramp (i, i, i) for i >= K, as the driving fork does."""
    full = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    full[: len(palette)] = palette
    return full


#: (256, 3) uint8: the driving palette padded with a grey ramp (index 255 = ignore shows as white).
DRIVING_PALETTE_256: np.ndarray = _grey_padded(DRIVING_PALETTE)


def davis_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: bits of the index are spread over the high bits of R, G and B.

    Bit 3k of the index goes to bit 7-k of R, bit 3k+1 to G and bit 3k+2 to B, so index 1 is (128, 0, 0),
    2 is (0, 128, 0) and 255 is (224, 224, 192).

    Args:
        n: number of entries.

    Returns:
        (n, 3) uint8 array.
    """
    idx = np.arange(n, dtype=np.int64)
    rgb = np.zeros((n, 3), dtype=np.int64)
    for k in range(8):  # 8 groups of 3 bits cover indices up to 2**24
        for channel in range(3):
            bit = (idx >> (3 * k + channel)) & 1
            rgb[:, channel] |= bit << (7 - k)
    return rgb.astype(np.uint8)


#: (256, 3) uint8 DAVIS palette (0 = black background, 1.. = objects).
DAVIS_PALETTE: np.ndarray = davis_palette(256)

#: Named 256-entry palettes.
PALETTES: dict[str, np.ndarray] = {"driving27": DRIVING_PALETTE_256, "davis": DAVIS_PALETTE}

for _p in (DRIVING_PALETTE, DRIVING_PALETTE_256, DAVIS_PALETTE):
    _p.setflags(write=False)  # shared module constants must not be modified in place


def get_palette(name: str) -> np.ndarray:
    """Return a named (256, 3) uint8 palette ("driving27" or "davis")."""
    try:
        return PALETTES[name]
    except KeyError:
        raise ValueError(f"unknown palette {name!r}; expected one of {sorted(PALETTES)}") from None


def pil_palette(palette: np.ndarray) -> list[int]:
    """Flatten a (K, 3) palette into the list Pillow's ``Image.putpalette`` expects (padded to 256 entries)."""
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
        raise ValueError(f"palette must have shape (K <= 256, 3), got {palette.shape}")
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(palette)] = palette
    return full.reshape(-1).tolist()
