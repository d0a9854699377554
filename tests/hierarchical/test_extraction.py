"""Region extraction: shapes, ordering, manifest, resume, stacked layout, normalisation checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dino_lib.config import ConfigError, from_dict, load_config
from dino_lib.hierarchical.dataset import RegionFeatureDataset
from dino_lib.hierarchical.encoder import TileEncoder, load_tile_encoder
from dino_lib.hierarchical.extraction import RegionExtractionConfig, extract_regions
from dino_lib.hierarchical.manifest import read_manifest
from dino_lib.hierarchical.sources import read_image
from dino_lib.hierarchical.tiling import tile_region
from dino_lib.models import IMAGENET_MEAN, IMAGENET_STD

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def _cfg(src: Path, out: Path, **kw) -> RegionExtractionConfig:
    base = {"data_path": str(src), "output_dir": str(out), "tile_size": 64, "input_size": 32, "batch_size": 6,
            "precision": "fp32", "fallback_encoder": TINY, "device": "cpu"}  # fmt: skip
    return from_dict(RegionExtractionConfig, {**base, **kw})


def test_extraction_writes_row_major_fp16_tensors(region_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = extract_regions(_cfg(region_folder, out, stacked=True))
    rows = read_manifest(result.manifest)
    assert result.written == 4 and result.tiles == 64 and len(rows) == 4
    assert {r["slide_id"] for r in rows} == {"ihc-a", "ihc-b"}
    row = rows[0]
    assert (row["g"], row["D"], row["tile_size"], row["region_size"]) == (4, 32, 64, 256)
    assert row["norm_mean"] == ";".join(f"{v:.6g}" for v in IMAGENET_MEAN)
    saved = torch.load(out / row["feature_path"], weights_only=True)
    assert saved["features"].dtype == torch.float16 and saved["features"].shape == (16, 32)
    # recompute with the same (seeded) encoder: tile k of the region image is row k of the tensor
    encoder = load_tile_encoder(None, input_size=32, fallback=TINY, normalization="imagenet")
    image = read_image(region_folder / f"{row['region_id']}.png")
    tiles, _ = tile_region(image, 64)
    expected = encoder(tiles)
    torch.testing.assert_close(saved["features"].float(), expected, atol=2e-2, rtol=1e-2)
    # the stacked layout holds the same regions
    stacked = RegionFeatureDataset(result.stacked_manifest, g=4, dim=32)
    flat = RegionFeatureDataset(out, g=4, dim=32)
    assert len(stacked) == 4 and stacked.rows[0]["stack_index"] == 0
    torch.testing.assert_close(stacked[3][0], flat[3][0])
    coords = (out / "slides" / "coords.csv").read_text().splitlines()
    assert coords[0] == "slide_id,stack_index,region_id,x,y" and len(coords) == 5


def test_resume_skips_matching_regions_and_refuses_other_encoders(region_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = extract_regions(_cfg(region_folder, out))
    victim = out / read_manifest(first.manifest)[1]["feature_path"]
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "regions").glob("*.pt")}
    victim.write_bytes(b"truncated")  # a damaged file is re-extracted
    second = extract_regions(_cfg(region_folder, out))
    assert (second.written, second.skipped) == (1, 3)
    unchanged = [p for p, t in mtimes.items() if p != victim and p.stat().st_mtime_ns == t]
    assert len(unchanged) == 3 and torch.load(victim, weights_only=True)["features"].shape == (16, 32)
    with pytest.raises(ConfigError, match="another stage-1 encoder or normalisation"):
        extract_regions(_cfg(region_folder, out, normalization="hipt"))
    third = extract_regions(_cfg(region_folder, out, normalization="hipt", overwrite=True))
    assert third.written == 4


def test_tiles_layout_matches_regions_layout(region_folder: Path, tmp_path: Path) -> None:
    tiles_dir = tmp_path / "tiles"
    tiles_dir.mkdir()
    for path in sorted(region_folder.glob("*.png")):
        slide, rest = path.stem.split("_x")
        x0, y0 = (int(v) for v in rest.split("_y"))
        img = np.asarray(Image.open(path))
        for r in range(4):
            for c in range(4):
                name = f"{slide}_x{x0 + c * 64}_y{y0 + r * 64}.png"
                Image.fromarray(img[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]).save(tiles_dir / name)
    (tiles_dir / "ihc-a_x9000_y0.png").write_bytes((tiles_dir / "ihc-a_x0_y0.png").read_bytes())  # incomplete
    a = RegionFeatureDataset(extract_regions(_cfg(region_folder, tmp_path / "a")).manifest, g=4, dim=32)
    b_result = extract_regions(_cfg(tiles_dir, tmp_path / "b", input_layout="tiles", region_size=256))
    b = RegionFeatureDataset(b_result.manifest, g=4, dim=32)
    assert [(r["slide_id"], r["x"], r["y"]) for r in a.rows] == [(r["slide_id"], r["x"], r["y"]) for r in b.rows]
    torch.testing.assert_close(a.features, b.features)


def test_normalisation_must_match_stage1(tmp_path: Path, tiny_vit) -> None:
    weights = tmp_path / "run" / "teacher_backbone.pth"
    weights.parent.mkdir()
    torch.save(tiny_vit.state_dict(), weights)
    (tmp_path / "run" / "config.yaml").write_text("arch: vit_tiny\nnormalization: hipt\n")
    enc = load_tile_encoder(weights, normalization="auto")
    assert isinstance(enc, TileEncoder) and enc.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert enc.embed_dim == 32 and len(enc.backbone.blocks) == 2
    with pytest.raises(ValueError, match="differs from the one stage 1 was trained with"):
        load_tile_encoder(weights, normalization="imagenet")
    (tmp_path / "run" / "config.yaml").write_text("arch: vit_tiny\n")
    enc = load_tile_encoder(weights, normalization="auto")  # nothing recorded: ImageNet, the training default
    torch.testing.assert_close(enc.std.flatten(), torch.tensor(IMAGENET_STD))


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs region_size"):
        load_config(RegionExtractionConfig, None, {"input_layout": "tiles"})
    with pytest.raises(ConfigError, match="multiple of tile_size"):
        load_config(RegionExtractionConfig, None, {"region_size": 1000})
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((100, 128, 3), np.uint8)).save(bad / "s_0_0.png")
    with pytest.raises(ValueError, match="not a multiple of the tile size 64"):
        extract_regions(_cfg(bad, tmp_path / "o"))
    result = extract_regions(_cfg(bad, tmp_path / "o", pad_mode="pad"))
    row = read_manifest(result.manifest)[0]  # 100 x 128 padded with white to 128 x 128
    assert (row["g"], row["region_size"]) == (2, 128)


def test_hs2p_folder_layout(tmp_path: Path, region_folder: Path) -> None:
    from dino_lib.hierarchical.sources import list_regions

    for slide in ("slide-1", "slide-2"):
        (tmp_path / "hs2p" / slide / "imgs").mkdir(parents=True)
        for src in sorted(region_folder.glob("ihc-a_*.png")):
            (tmp_path / "hs2p" / slide / "imgs" / f"{src.stem.split('_x')[1].replace('_y', '_')}.png").write_bytes(
                src.read_bytes()
            )
    regions = list_regions(tmp_path / "hs2p")
    assert [(r.region_id, r.slide_id, r.x, r.y) for r in regions] == [
        ("slide-1_0_0", "slide-1", 0, 0), ("slide-1_256_0", "slide-1", 256, 0),
        ("slide-2_0_0", "slide-2", 0, 0), ("slide-2_256_0", "slide-2", 256, 0),
    ]  # fmt: skip


def test_ensure_region_features_extracts_only_when_asked(tmp_path: Path) -> None:
    from dino_lib.hierarchical.extraction import ensure_region_features

    with pytest.raises(FileNotFoundError, match="no region manifest at .*typo"):
        ensure_region_features(tmp_path / "typo")  # a missing folder is an error unless extraction is asked for
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no region manifest at .*empty"):
        ensure_region_features(tmp_path / "empty", {"fallback_encoder": TINY})  # existing folders are never filled
    with pytest.raises(ConfigError, match="region.extract_if_missing.input_sise"):
        ensure_region_features(tmp_path / "features", {"input_sise": 64})
    manifest = ensure_region_features(tmp_path / "features", {"input_size": 64, "fallback_encoder": TINY})
    assert len(read_manifest(manifest)) == 2  # the two sample histology regions
    assert ensure_region_features(manifest.parent) == manifest
