"""Parity mode reproduces the reference DAVIS protocol (preset dino_v1; golden outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dino_lib.propagation import PropagationConfig, propagate
from dino_lib.propagation.backbones import build_extractor
from dino_lib.propagation.parity import DAVIS_STD, davis_geometry, norm_mask, parity_channel_ids

from .parity_reference import make_tiny_davis, reference_predictions

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "propagation" / "parity_golden"


def test_frame_size_rule():
    assert davis_geometry((480, 854), 16).input_hw == (480, 832)
    assert davis_geometry((480, 854), 16).grid_hw == (30, 52)
    assert davis_geometry((480, 1152 + 30), 16).input_hw == (480, 1152)
    assert davis_geometry((1000, 480), 8).input_hw == (960, 480)  # portrait: width 480, height floored
    with pytest.raises(ValueError, match="square"):
        davis_geometry((480, 480), 16)
    assert DAVIS_STD[0] == 0.228  # the reference quirk, kept on purpose


def test_norm_mask_changes_the_argmax_as_in_the_spec():
    """Scores (0.9, 0.8, 0.6) and (0.05, 0.1, 0.2): raw argmax is class 0 everywhere, after min-max the third
    pixel goes to class 1."""
    scores = torch.tensor([[[0.9, 0.8, 0.6]], [[0.05, 0.1, 0.2]]])
    assert scores.argmax(0).tolist() == [[0, 0, 0]]
    assert norm_mask(scores).argmax(0).tolist() == [[0, 0, 1]]


def test_compact_channels_keep_reference_argmax():
    """C = max id + 1 in the reference; present ids + 0 decide identically (absent channels are all zero)."""
    assert parity_channel_ids(np.array([[3, 5], [5, 3]])) == [0, 3, 5]
    soft = torch.rand(6, 4, 4)
    soft[[1, 2, 4]] = 0
    full = norm_mask(soft).argmax(0)
    compact = torch.tensor([0, 3, 5])[norm_mask(soft[[0, 3, 5]]).argmax(0)]
    assert torch.equal(full, compact)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    root = make_tiny_davis(tmp / "DAVIS")
    extractor = build_extractor("vit_tiny", patch_size=16, model_kwargs={"depth": 2}, seed=0)
    cfg = PropagationConfig(
        data_path=str(root),
        dataset="davis",
        protocol="davis_parity",
        arch="vit_tiny",
        model_kwargs={"depth": 2},
        output_dir=str(tmp / "out"),
        feature_cache=False,
        batch_size=3,
    )
    (result,) = propagate(cfg, extractor=extractor)
    return root, tmp / "out" / "tiny", extractor, result


def test_parity_outputs_match_the_step_by_step_reference(parity_run):
    root, out, extractor, result = parity_run
    assert result.written == 4
    want = reference_predictions(root, extractor.model)
    for t, ref in enumerate(want):
        got = np.asarray(Image.open(out / f"{t:05d}.png"))
        assert got.shape == ref.shape == (64, 96)
        agree = (got == ref).mean()
        assert agree >= 0.999, f"frame {t}: only {agree:.4f} of pixels agree with the re-derivation"


def test_parity_golden_outputs(parity_run):
    """Regression against checked-in outputs of the re-derivation (make_parity_golden.py regenerates them). Pixels
    may flip only where two objects tie after norm_mask (float summation order, batched extraction): <= 0.1 %."""
    _, out, _, _ = parity_run
    for t in range(4):
        golden = np.asarray(Image.open(GOLDEN / f"{t:05d}.png"))
        got = Image.open(out / f"{t:05d}.png")
        assert got.mode == "P" and got.getpalette()[3:6] == [128, 0, 0]  # DAVIS palette, object 1 is dark red
        assert (np.asarray(got) == golden).mean() >= 0.999, f"frame {t} drifted from the golden output"
        assert set(np.unique(golden)) <= {0, 1, 2} and (golden == 1).any() and (golden == 2).any()
    first = np.asarray(Image.open(root_annotation(out)))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "00000.png")), first)  # first frame copied


def root_annotation(out: Path) -> Path:
    return out.parents[1] / "DAVIS" / "Annotations" / "480p" / "tiny" / "00000.png"
