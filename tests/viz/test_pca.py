"""The patch-PCA figure draws given arrays: one row per image, image / first component / colours."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dino_lib.viz.pca import patch_pca_figure


def test_figure_layout_and_contents():
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    rgb = [rng.random((4, 6, 3)) for _ in range(2)]
    first = [rng.random((4, 6)) for _ in range(2)]
    fig = patch_pca_figure(pictures, rgb, first, names=["a", "b"], title="t")
    axes = np.array(fig.axes).reshape(2, 3)
    np.testing.assert_array_equal(axes[1, 0].images[0].get_array(), pictures[1])
    np.testing.assert_allclose(axes[0, 2].images[0].get_array(), rgb[0])
    assert axes[0, 1].images[0].get_extent() == [0, 96, 64, 0]  # grid maps stretched over the picture
    plt.close(fig)
    fig = patch_pca_figure(pictures, rgb)
    assert len(fig.axes) == 4
    plt.close(fig)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="as many colour maps"):
        patch_pca_figure([np.zeros((8, 8, 3), np.uint8)], [])
