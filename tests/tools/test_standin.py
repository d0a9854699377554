"""Stand-in predictions (tools/demo/standin.py): a repository tool for demos and CI, not part of the package."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

# a repository tool, not part of the installed package: read its definitions from the file
_STANDIN = runpy.run_path(str(REPO / "tools" / "demo" / "standin.py"), run_name="demo_standin")
corrupt_predictions = _STANDIN["corrupt_predictions"]
make_standin_predictions = _STANDIN["make_standin_predictions"]


def _ids(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_corrupted_ground_truth_keeps_keyframes_and_drifts_the_rest(tmp_path, sample_paths):
    out = corrupt_predictions("sample:driving", tmp_path / "pred", label_every=8)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    frames = manifest["frames"]
    assert manifest["label_frames"] == [frames[0], frames[8]] and len(frames) == 16
    assert manifest["source_frames"][frames[9]] == frames[8]
    gt_dir = sample_paths.driving / run_dir.name / "segmentation"
    assert np.array_equal(_ids(run_dir / f"{frames[8]}.png"), _ids(gt_dir / f"{frames[8]}.png"))
    assert not np.array_equal(_ids(run_dir / f"{frames[9]}.png"), _ids(gt_dir / f"{frames[9]}.png"))
    probs = np.load(run_dir / "probs" / f"{frames[3]}.npy")
    assert probs.dtype == np.float16 and probs.shape[0] == len(manifest["prob_classes"])
    assert np.allclose(probs.astype(np.float32).sum(axis=0), 1, atol=1e-2)
    again = corrupt_predictions("sample:driving", tmp_path / "again", label_every=8)
    assert np.array_equal(_ids(run_dir / f"{frames[9]}.png"), _ids(again / run_dir.name / f"{frames[9]}.png"))


def test_command_line_writes_a_folder_the_metrics_step_scores(tmp_path, sample_paths, capsys):
    from dino_lib.metrics.__main__ import main as metrics_main

    pred = _STANDIN["main"](["--out", str(tmp_path / "pred"), "--source", "corrupt"])
    assert "corrupted ground truth" in capsys.readouterr().out
    out = tmp_path / "m"
    assert metrics_main([f"predictions={pred}", f"output_dir={out}", "video=null", "overlays=0"]) == 0
    assert 0 < pd.read_csv(out / "summary.csv")["miou_present"].iloc[0] < 1


@pytest.mark.slow
def test_propagation_standin_is_a_tiny_random_vit(tmp_path, sample_paths):
    from dino_lib.metrics.__main__ import main as metrics_main

    pred, used = make_standin_predictions("sample:driving", tmp_path / "pred", source="propagation")
    assert used == "tiny random ViT propagation"
    assert (pred / "pagoda-pan" / "manifest.json").is_file()
    out = tmp_path / "p"
    argv = [f"predictions={pred}", f"output_dir={out}", "video=gif", "overlays=1", "gallery_per_class=1"]
    assert metrics_main(argv) == 0
    assert pd.read_csv(out / "summary.csv")["frames_evaluated"].iloc[0] == 14  # 16 frames, keyframes 0 and 8
