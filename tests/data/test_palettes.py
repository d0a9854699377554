"""Palettes: the DAVIS/VOC colour map and the 27-class driving palette."""

from __future__ import annotations

import numpy as np
import pytest

from dino_lib.data.palettes import (
    DAVIS_PALETTE,
    DRIVING_CLASSES,
    DRIVING_PALETTE,
    DRIVING_PALETTE_256,
    davis_palette,
    get_palette,
    pil_palette,
)


def test_davis_palette_known_entries():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    # standard VOC colours
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        4: (0, 0, 128),
        8: (64, 0, 0),
        15: (192, 128, 128),
        255: (224, 224, 192),
    }
    for index, rgb in expected.items():
        assert tuple(DAVIS_PALETTE[index]) == rgb, index
    assert len({tuple(c) for c in DAVIS_PALETTE}) == 256  # every object id gets its own colour
    assert np.array_equal(davis_palette(16), DAVIS_PALETTE[:16])


def test_driving_palette_table():
    assert DRIVING_PALETTE.shape == (27, 3) and DRIVING_PALETTE.dtype == np.uint8
    assert len(DRIVING_CLASSES) == 27 and len(set(DRIVING_CLASSES)) == 27
    assert tuple(DRIVING_PALETTE[0]) == (220, 20, 60)
    assert tuple(DRIVING_PALETTE[DRIVING_CLASSES.index("sky")]) == (70, 130, 180)
    assert np.array_equal(DRIVING_PALETTE[3], DRIVING_PALETTE[4])  # the fork's shared colour
    assert tuple(DRIVING_PALETTE[26]) == (0, 0, 0)
    ramp = np.arange(27, 256)
    assert np.array_equal(DRIVING_PALETTE_256[27:], np.stack([ramp] * 3, 1))
    assert np.array_equal(DRIVING_PALETTE_256[:27], DRIVING_PALETTE)


def test_palettes_are_read_only_and_named():
    with pytest.raises(ValueError):
        DAVIS_PALETTE[0, 0] = 1
    assert get_palette("driving27") is DRIVING_PALETTE_256
    assert get_palette("davis") is DAVIS_PALETTE
    with pytest.raises(ValueError, match="driving27"):
        get_palette("voc")


def test_pil_palette_flattens_and_pads():
    flat = pil_palette(DRIVING_PALETTE)
    assert len(flat) == 768 and flat[:3] == [220, 20, 60] and flat[27 * 3 :] == [0] * (768 - 81)
    with pytest.raises(ValueError, match="shape"):
        pil_palette(np.zeros((4, 4), dtype=np.uint8))
