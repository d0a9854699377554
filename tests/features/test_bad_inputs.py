"""``python -m dino_lib.features`` (images and ``task: regions``) on bad inputs: one message, exit 2, no leftovers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dino_lib.models import build_backbone

REPO = Path(__file__).resolve().parents[2]
REGIONS = REPO / "params" / "extract_region_features" / "ci.yaml"
IMAGES = ["data_path=sample:labelled", "arch=vit_tiny", "depth=2", "resize=64", "crop=56", "num_workers=0"]

CASES = {
    "missing data": (IMAGES[1:] + ["data_path=/no/such/set"], ["data_path: /no/such/set does not exist"]),
    "unknown split": (IMAGES + ["splits=[train, test]"], ["test", "folder not found"]),
    "regions: missing data": (
        ["--config", REGIONS, "data_path=/no/regions"],
        ["data_path: /no/regions does not exist"],
    ),
    "regions: zero tile size": (["--config", REGIONS, "tile_size=0"], ["command line: tile_size: must be > 0"]),
    "regions: region not a multiple": (
        ["--config", REGIONS, "region_size=100", "tile_size=64"],
        ["region_size 100 must be a multiple of tile_size 64"],
    ),
    "regions: precision": (["--config", REGIONS, "--precision", "fp8"], ["precision: expected one of"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    extra, fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("features", *extra, f"output_dir={out}")
    clean_failure(code, err, *fragments, out=out)


def test_corrupt_image_is_reported_before_extraction(tmp_path, twin, clean_failure, labelled_folder, truncated_jpeg):
    root = tmp_path / "data"
    shutil.copytree(labelled_folder, root)
    cls = sorted(p.name for p in (root / "train").iterdir())[0]
    truncated_jpeg(root / "train" / cls / "zz_cut.jpg")
    out = tmp_path / "out"
    code, err = twin("features", *IMAGES[1:], f"data_path={root}", f"output_dir={out}")
    clean_failure(code, err, "zz_cut.jpg", out=out)


def test_regions_with_nan_weights(tmp_path, twin, clean_failure):
    state = build_backbone("vit_tiny", patch_size=16, depth=2).state_dict()
    path = tmp_path / "nan.pth"
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, path)
    out = tmp_path / "out"
    code, err = twin(
        "features", "--config", REGIONS, f"pretrained_weights={path}", "arch=vit_tiny", f"output_dir={out}"
    )
    clean_failure(code, err, "nan.pth", "NaN or Inf", out=out)


def test_regions_with_a_truncated_region_image(tmp_path, twin, clean_failure, truncated_jpeg):
    from dino_lib.data.samples import resolve_data_path

    src = tmp_path / "regions"
    shutil.copytree(resolve_data_path("sample:histology_regions"), src)
    truncated_jpeg(src / "zz-cut_x0_y0.jpg", size=256)
    out = tmp_path / "out"
    code, err = twin("features", "--config", REGIONS, f"data_path={src}", "precision=fp32", f"output_dir={out}")
    clean_failure(code, err, "zz-cut_x0_y0.jpg", out=out)
