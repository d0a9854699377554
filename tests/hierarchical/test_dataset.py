"""Region data set validation: every bad input fails before training, naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_lib.hierarchical.dataset import RegionDataError, RegionFeatureDataset
from dino_lib.hierarchical.manifest import read_manifest, write_manifest

G, D = 16, 384


def _folder(tmp_path: Path, tensors: dict[str, object]) -> Path:
    folder = tmp_path / "regions"
    folder.mkdir(exist_ok=True)
    for name, t in tensors.items():
        torch.save(t, folder / f"{name}.pt")
    return folder


def _good(seed: int = 0) -> torch.Tensor:
    return torch.randn(G * G, D, generator=torch.Generator().manual_seed(seed)).half()


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.randn(196, 384), r"196 tiles \(a 14x14 grid\), expected \[256, 384\]"),
        (torch.randn(300, 384), r"300 tiles \(not a square number of tiles\)"),
        (torch.randn(1024, 384), r"1024 tiles \(a 32x32 grid\)"),
        (torch.randn(256, 192), r"feature dimension 192 .*expected \[256, 384\]"),
        (torch.randn(384, 256), r"shape \[384, 256\] is transposed"),
        (torch.randn(3, 256, 384), r"looks like a per-slide stack"),
        ({"x": 1}, r"holds dict"),
    ],
)
def test_bad_shapes_are_rejected_with_file_name(tmp_path: Path, bad: object, message: str) -> None:
    folder = _folder(tmp_path, {"s1_0_0": _good(), "s1_4096_0": bad})
    with pytest.raises(RegionDataError, match=message) as info:
        RegionFeatureDataset(folder, g=G, dim=D)
    assert "s1_4096_0.pt" in str(info.value) and "1 of 2" in str(info.value)


def test_non_finite_values(tmp_path: Path) -> None:
    bad = _good().float()
    bad[3, 7] = float("nan")
    folder = _folder(tmp_path, {"a_0_0": bad})
    with pytest.raises(RegionDataError, match=r"a_0_0.pt: 1 non-finite values"):
        RegionFeatureDataset(folder, g=G, dim=D)
    assert len(RegionFeatureDataset(folder, g=G, dim=D, check_finite=False)) == 1


def test_empty_or_missing_data(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no tensors here")
    with pytest.raises(RegionDataError, match=r"no region tensors in .*empty \(glob '\*.pt'\)"):
        RegionFeatureDataset(tmp_path / "empty", g=G, dim=D)
    with pytest.raises(RegionDataError, match="region data not found: .*nowhere"):
        RegionFeatureDataset(tmp_path / "nowhere", g=G, dim=D)


def _manifest(tmp_path: Path, names: list[str], **extra) -> Path:
    rows = [{"region_id": n, "slide_id": n.split("_")[0], "x": i, "y": 0, "g": G, "D": D,
             "feature_path": f"regions/{n}.pt", "stack_index": -1, **extra} for i, n in enumerate(names)]  # fmt: skip
    return write_manifest(rows, tmp_path / "manifest.csv")


def test_missing_unreadable_and_lfs_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a_0_0": _good()})
    (folder / "b_0_0.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 393216\n")
    (folder / "c_0_0.pt").write_bytes(b"\x80\x02garbage")
    manifest = _manifest(tmp_path, ["a_0_0", "b_0_0", "c_0_0", "d_0_0"])
    with pytest.raises(RegionDataError) as info:
        RegionFeatureDataset(manifest, g=G, dim=D)
    text = str(info.value)
    assert "3 of 4" in text
    assert "b_0_0.pt: is a Git LFS pointer" in text and "git lfs pull" in text
    assert "c_0_0.pt: unreadable" in text
    assert "d_0_0.pt: file not found" in text


def test_manifest_g_and_encoder_checks(tmp_path: Path) -> None:
    _folder(tmp_path, {"a_0_0": _good()})
    manifest = _manifest(tmp_path, ["a_0_0"])
    with pytest.raises(RegionDataError, match="column g holds \\[16\\] but the configuration expects 8"):
        RegionFeatureDataset(manifest, g=8, dim=D)
    rows = read_manifest(manifest)
    rows.append({**rows[0], "region_id": "a_1_0", "x": 1, "encoder_hash": "other"})
    rows[0]["encoder_hash"] = "first"
    write_manifest(rows, manifest)
    with pytest.raises(RegionDataError, match="different stage-1 encoders"):
        RegionFeatureDataset(manifest, g=G, dim=D)


def test_slide_exclusion_and_seeded_subset(tmp_path: Path) -> None:
    names = [f"s{s}_{x}_0" for s in range(4) for x in range(5)]
    folder = _folder(tmp_path, {n: _good(i) for i, n in enumerate(names)})
    full = RegionFeatureDataset(folder, g=G, dim=D)
    assert len(full) == 20 and full[0][0].dtype == torch.float32 and full[0][0].shape == (G * G, D)
    excluded_file = tmp_path / "eval_slides.txt"
    excluded_file.write_text("s1\n# comment\ns3\n")
    kept = RegionFeatureDataset(folder, g=G, dim=D, exclude_slides=str(excluded_file))
    assert sorted(set(kept.slide_ids)) == ["s0", "s2"] and len(kept) == 10
    a = RegionFeatureDataset(folder, g=G, dim=D, pct=0.3, seed=7)
    b = RegionFeatureDataset(folder, g=G, dim=D, pct=0.3, seed=7, in_memory=False)  # another "rank"
    c = RegionFeatureDataset(folder, g=G, dim=D, pct=0.3, seed=8)
    assert len(a) == 6 and [r["region_id"] for r in a.rows] == [r["region_id"] for r in b.rows]
    assert [r["region_id"] for r in a.rows] != [r["region_id"] for r in c.rows]
    torch.testing.assert_close(a[2][0], b[2][0])
    with pytest.raises(RegionDataError, match="no regions left"):
        RegionFeatureDataset(folder, g=G, dim=D, include_slides=["s9"])


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8])
def test_integer_and_boolean_region_tensors_are_refused(dtype):
    from dino_lib.hierarchical.dataset import check_region_tensor

    t = torch.ones(4, 8).to(dtype)
    with pytest.raises(RegionDataError, match=rf"r1\.pt: dtype {dtype}, expected floating-point features"):
        check_region_tensor(t, g=2, dim=8, name="r1.pt")
    assert check_region_tensor(t.half(), g=2, dim=8, name="r1.pt").dtype == torch.float16
