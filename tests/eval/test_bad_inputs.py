"""``python -m dino_lib.eval`` on bad inputs: one message naming the key or file, exit code 2, nothing left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dino_lib.models import build_backbone

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "params" / "evaluate" / "ci.yaml"


@pytest.fixture()
def weights(tmp_path):
    """``make(kind)``: a vit_tiny (depth 2) checkpoint with NaN values, integer tensors or no tensors at all."""

    def make(kind: str) -> Path:
        state = build_backbone("vit_tiny", patch_size=16, depth=2).state_dict()
        path = tmp_path / f"{kind}.pth"
        if kind == "nan":
            state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
        elif kind == "int":
            state = {k: v.long() for k, v in state.items()}
        if kind == "text":
            path.write_text("not a checkpoint")
        else:
            torch.save({"teacher": state}, path)
        return path

    return make


CASES = {
    "unknown task": (["task=retrieval"], ["task"]),
    "zero temperature": (["temperature=0"], ["command line: temperature: must be > 0"]),
    "unknown device": (["--device", "tpu"], ["device: expected auto, cpu, cuda or cuda:N"]),
    "missing data": (["data_path=/no/such/folder"], ["data_path: /no/such/folder does not exist"]),
    "missing weights": (["pretrained_weights=/no/such.pth"], ["pretrained_weights: /no/such.pth does not exist"]),
    "missing linear weights": (["linear_weights=/no/lin.pth"], ["linear_weights: /no/lin.pth does not exist"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    extra, fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("eval", "--config", CI, f"output_dir={out}", *extra)
    clean_failure(code, err, *fragments, out=out)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("nan", "hold NaN or Inf values"), ("int", "are not floating point"), ("text", "could not load")],
)
def test_unusable_weights_are_refused(kind, fragment, tmp_path, twin, clean_failure, weights, labelled_folder):
    out = tmp_path / "out"
    path = weights(kind)
    code, err = twin("eval", "--config", CI, f"data_path={labelled_folder}", f"pretrained_weights={path}",
                     f"output_dir={out}", "task=knn")  # fmt: skip
    clean_failure(code, err, path.name, fragment, out=out)


def test_missing_val_split(tmp_path, twin, clean_failure, labelled_folder):
    root = tmp_path / "data"
    shutil.copytree(labelled_folder / "train", root / "train")
    code, err = twin("eval", "--config", CI, f"data_path={root}", f"output_dir={tmp_path / 'out'}")
    clean_failure(code, err, "no 'val/' folder", out=tmp_path / "out")


def test_corrupt_val_image_is_reported_before_any_extraction(tmp_path, twin, clean_failure, labelled_folder,
                                                             truncated_jpeg):  # fmt: skip
    root = tmp_path / "data"
    shutil.copytree(labelled_folder, root)
    cls = sorted(p.name for p in (root / "val").iterdir())[0]
    truncated_jpeg(root / "val" / cls / "zz_cut.jpg")
    out = tmp_path / "out"
    code, err = twin("eval", "--config", CI, f"data_path={root}", f"output_dir={out}", "task=knn")
    clean_failure(code, err, "zz_cut.jpg", "cannot read the image", out=out)
