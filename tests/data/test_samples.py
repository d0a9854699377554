"""Sample data: layouts, determinism, exact video ground truth, caching and ``sample:`` paths."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dino_lib import sample_data
from dino_lib.data import sample_photos, sample_video, samples
from dino_lib.data.palettes import DAVIS_PALETTE, DRIVING_IGNORE_ID
from dino_lib.data.samples import COMPONENTS, SamplePaths, ensure_sample_data, resolve_data_path

TILE_RE = re.compile(r"^(?P<slide>[\w-]+)_x(?P<x>\d+)_y(?P<y>\d+)\.(?P<ext>jpg|png)$")


def _fresh_build(root: Path) -> SamplePaths:
    # drop the in-process caches so that the second build really recomputes everything
    sample_photos.load_photo.cache_clear()
    sample_video.make_video.cache_clear()
    return ensure_sample_data(root)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SamplePaths:
    return _fresh_build(tmp_path_factory.mktemp("cache_a"))


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_paths_and_stamps(built: SamplePaths):
    assert built.root.name == "v1" and built.root.parent.name == "sample_data"
    for name in COMPONENTS:
        assert getattr(built, name) == built.root / name and getattr(built, name).is_dir()
        assert json.loads((built.root / f"{name}.stamp.json").read_text())["component"] == name
    total = sum(p.stat().st_size for p in built.root.rglob("*") if p.is_file())
    assert total < 10 * 2**20  # "a few MB"


def test_pretraining_images(built: SamplePaths):
    classes = sorted(p.name for p in built.images.iterdir())
    assert classes == sorted(sample_photos.PHOTO_NAMES)
    files = sorted(built.images.glob("*/*.jpg"))
    assert 32 <= len(files) <= 64
    for f in files:
        im = Image.open(f)
        assert im.mode == "RGB" and im.size[::-1] in sample_photos.IMAGE_SIZES
    # crops differ from each other (not one picture repeated)
    first = [_read(f).astype(float).mean() for f in sorted((built.images / "astronaut").glob("*.jpg"))]
    assert len(set(np.round(first, 3))) == len(first)


def test_labelled_task(built: SamplePaths):
    for split, count in (("train", sample_photos.LABELLED_TRAIN), ("val", sample_photos.LABELLED_VAL)):
        classes = sorted(p.name for p in (built.labelled / split).iterdir())
        assert classes == sorted(sample_photos.LABELLED_CLASSES)
        for c in classes:
            files = sorted((built.labelled / split / c).glob("*.jpg"))
            assert len(files) == count
            assert all(Image.open(f).size == (112, 112) and Image.open(f).mode == "RGB" for f in files)


def _run_dir(built: SamplePaths) -> Path:
    runs = sorted(p for p in built.driving.iterdir())
    assert [p.name for p in runs] == [sample_video.RUN_NAME]  # DATAROOT holds only run folders
    return runs[0]


def test_driving_layout_and_labels(built: SamplePaths):
    run = _run_dir(built)
    images = sorted((run / "image").glob("*.jpg"))
    labels = sorted((run / "segmentation").glob("*.png"))
    assert len(images) == sample_video.NUM_FRAMES
    assert [p.stem for p in images] == [p.stem for p in labels] == [f"{t:05d}" for t in range(len(images))]
    present: set[int] = set()
    for img_path, lab_path in zip(images, labels):
        im, lab = Image.open(img_path), Image.open(lab_path)
        assert im.mode == "RGB" and lab.mode == "L" and im.size == lab.size == sample_video.FRAME_HW[::-1]
        ids = np.unique(_read(lab_path))
        assert ids.dtype == np.uint8
        assert set(ids.tolist()) <= set(range(27)) | {DRIVING_IGNORE_ID}
        present |= set(ids.tolist())
        ignore = (_read(lab_path) == DRIVING_IGNORE_ID).mean()
        assert 0 < ignore < 0.15  # a thin band, not a mask over the frame
    assert len(present - {DRIVING_IGNORE_ID}) >= 4


def _warp_nearest(src: np.ndarray, win_src, win_dst, order: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Map a frame with window win_src into the geometry of win_dst by the known motion. Returns (warped, inside)."""
    from scipy import ndimage

    h, w = src.shape[:2]
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    wx = win_dst[0] + (jj + 0.5) * win_dst[2]  # world point of each destination pixel centre
    wy = win_dst[1] + (ii + 0.5) * win_dst[2]
    u = (wx - win_src[0]) / win_src[2] - 0.5  # continuous source pixel index
    v = (wy - win_src[1]) / win_src[2] - 0.5
    inside = (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
    if order == 0:
        ui, vi = np.clip(np.rint(u).astype(int), 0, w - 1), np.clip(np.rint(v).astype(int), 0, h - 1)
        return src[vi, ui], inside
    warped = np.stack(
        [
            ndimage.map_coordinates(src[..., c].astype(float), [v, u], order=1, mode="nearest")
            for c in range(src.shape[2])
        ],
        -1,
    )
    return warped, inside


def test_driving_ground_truth_is_exact_under_known_motion(built: SamplePaths):
    run = _run_dir(built)
    windows = json.loads((run / "camera.json").read_text())["windows_x0_y0_s"]
    assert len(windows) == sample_video.NUM_FRAMES
    label0 = _read(run / "segmentation" / "00000.png")
    frame0 = _read(run / "image" / "00000.jpg")
    for t in range(1, len(windows)):
        label_t = _read(run / "segmentation" / f"{t:05d}.png")
        warped, inside = _warp_nearest(label0, windows[0], windows[t])
        defined = inside & (warped != DRIVING_IGNORE_ID) & (label_t != DRIVING_IGNORE_ID)
        assert defined.mean() > 0.4, t  # the comparison covers a large part of the frame
        assert np.array_equal(warped[defined], label_t[defined]), t
    # the photo moves with the labels: warping frame 0 explains the last frame far better than not moving it
    frame_t = _read(run / "image" / f"{len(windows) - 1:05d}.jpg").astype(float)
    warped, inside = _warp_nearest(frame0, windows[0], windows[-1], order=1)
    aligned = np.abs(warped - frame_t)[inside].mean()
    static = np.abs(frame0.astype(float) - frame_t)[inside].mean()
    assert aligned < 8 and aligned < 0.4 * static, (aligned, static)


def test_davis_layout(built: SamplePaths):
    video = sample_video.VIDEO_NAME
    assert (built.davis / "ImageSets" / "2017" / "val.txt").read_text().split() == [video]
    frames = sorted((built.davis / "JPEGImages" / "480p" / video).glob("*.jpg"))
    annotations = sorted((built.davis / "Annotations" / "480p" / video).glob("*.png"))
    assert [p.stem for p in frames] == [p.stem for p in annotations] == [f"{t:05d}" for t in range(len(frames))]
    run = _run_dir(built)
    for frame, ann_path in zip(frames, annotations):
        ann = Image.open(ann_path)
        assert ann.mode == "P" and ann.size == Image.open(frame).size
        assert np.array_equal(np.array(ann.getpalette()[:768], dtype=np.uint8).reshape(256, 3), DAVIS_PALETTE)
        ids = np.asarray(ann)
        assert set(np.unique(ids).tolist()) <= set(range(sample_video.NUM_INSTANCES + 1))
        assert np.array_equal(_read(frame), _read(run / "image" / frame.name))
        # every object is a connected region of one class of the semantic labels (ignore band aside)
        labels = _read(run / "segmentation" / f"{frame.stem}.png")
        for obj in np.unique(ids[ids > 0]):
            classes = set(np.unique(labels[(ids == obj) & (labels != DRIVING_IGNORE_ID)]).tolist())
            assert len(classes) == 1, (frame.name, obj, classes)
    first = np.asarray(Image.open(annotations[0]))
    assert len(np.unique(first[first > 0])) >= 2


def test_histology(built: SamplePaths):
    regions = sorted(built.histology_regions.glob("*.png"))
    tiles = sorted(built.histology_tiles.glob("*.jpg"))
    assert len(regions) >= 2 and 32 <= len(tiles) <= 64
    region_arrays = {}
    for r in regions:
        m = TILE_RE.match(r.name)
        assert m, r.name
        im = Image.open(r)
        assert im.mode == "RGB" and im.size[0] % 256 == 0 and im.size[1] % 256 == 0 and im.size[0] >= 1024
        region_arrays[(m["slide"], int(m["x"]), int(m["y"]))] = np.asarray(im).astype(float)
    for t in tiles:
        m = TILE_RE.match(t.name)
        assert m and Image.open(t).size == (256, 256), t.name
        x, y = int(m["x"]), int(m["y"])
        # each tile is the matching window of the region that contains it (up to JPEG loss)
        (rx, ry), region = next(
            ((k[1], k[2]), a)
            for k, a in region_arrays.items()
            if k[0] == m["slide"] and k[1] <= x < k[1] + a.shape[1] and k[2] <= y < k[2] + a.shape[0]
        )
        window = region[y - ry : y - ry + 256, x - rx : x - rx + 256]
        assert np.abs(_read(t).astype(float) - window).mean() < 6, t.name
    assert len({m["slide"] for m in map(TILE_RE.match, (t.name for t in tiles))}) == 2


def test_build_is_deterministic(built: SamplePaths, tmp_path: Path):
    other = _fresh_build(tmp_path)
    for name in COMPONENTS:
        a, b = getattr(built, name), getattr(other, name)
        files = _files(a)
        assert files == _files(b), name
        for rel in files:
            if rel.suffix == ".png":
                assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
            elif rel.suffix == ".jpg":
                assert np.array_equal(_read(a / rel), _read(b / rel)), rel
            else:
                assert (a / rel).read_text() == (b / rel).read_text(), rel


def test_cache_is_reused_and_stale_parts_rebuilt(built: SamplePaths):
    root = built.root
    stamps = {c: (root / f"{c}.stamp.json").stat().st_mtime_ns for c in COMPONENTS}
    assert ensure_sample_data(root.parent.parent) == built
    assert stamps == {c: (root / f"{c}.stamp.json").stat().st_mtime_ns for c in COMPONENTS}  # nothing rebuilt

    # an old build format: rebuilt, and a stray file from it disappears
    stamp = root / "labelled.stamp.json"
    stamp.write_text(stamp.read_text().replace('"format": 1', '"format": 0'))
    (root / "labelled" / "stray.txt").write_text("old")
    # a partial build: folder present, stamp missing
    (root / "driving.stamp.json").unlink()
    victim = root / "driving" / sample_video.RUN_NAME / "segmentation" / "00003.png"
    expected = victim.read_bytes()
    victim.unlink()
    # a stamp without its folder
    import shutil

    shutil.rmtree(root / "histology_tiles")
    ensure_sample_data(root.parent.parent)
    assert not (root / "labelled" / "stray.txt").exists()
    assert victim.read_bytes() == expected
    assert len(list((root / "histology_tiles").glob("*.jpg"))) >= 32
    assert stamps["images"] == (root / "images.stamp.json").stat().st_mtime_ns  # untouched parts stay
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_resolve_data_path(built: SamplePaths, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DINO_LIB_CACHE", str(built.root.parent.parent))
    assert resolve_data_path("sample:images") == built.images
    assert resolve_data_path("sample:labelled/train") == built.labelled / "train"
    assert resolve_data_path("sample:labelled/train").is_dir()
    assert resolve_data_path("sample:davis/") == built.davis
    assert resolve_data_path("runs/data") == Path("runs/data")
    assert resolve_data_path("/abs/elsewhere") == Path("/abs/elsewhere")
    assert resolve_data_path(Path("sample:images")) == Path("sample:images")  # a Path is never reinterpreted
    with pytest.raises(ValueError, match="histology_regions") as err:
        resolve_data_path("sample:imgs")
    assert "'imgs'" in str(err.value)
    with pytest.raises(ValueError, match="inside"):
        resolve_data_path("sample:labelled/../images")


def test_cache_root_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DINO_LIB_CACHE", str(tmp_path / "env"))
    assert samples.sample_data_dir() == tmp_path / "env" / "sample_data" / "v1"
    assert samples.sample_data_dir(tmp_path / "arg") == tmp_path / "arg" / "sample_data" / "v1"
    monkeypatch.delenv("DINO_LIB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert samples.sample_data_dir() == tmp_path / "home" / ".cache" / "dino_lib" / "sample_data" / "v1"


def test_command_line(built: SamplePaths, capsys: pytest.CaptureFixture[str]):
    """``python -m dino_lib.sample_data`` builds the sets and prints where each one is."""
    paths = sample_data.main(["--root", str(built.root.parent.parent)])
    out = capsys.readouterr().out
    assert paths == built
    for name in ("root", *COMPONENTS):
        assert re.search(rf"^{name}\s+{re.escape(os.fspath(getattr(built, name)))}$", out, re.M), name


def test_failed_build_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(dest: Path) -> int:
        dest.mkdir(parents=True)
        (dest / "half.jpg").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setitem(samples._BUILDERS, "images", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_sample_data(tmp_path)
    base = samples.sample_data_dir(tmp_path)
    assert sorted(p.name for p in base.iterdir()) == []  # no folder, no stamp, no temporary build folder


def test_concurrent_builders_share_one_cache(tmp_path: Path):
    import subprocess
    import sys

    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
        "from dino_lib.data.samples import ensure_sample_data; print(ensure_sample_data(sys.argv[1]).root)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    builds = sum(err.count("built sample data") for _, err in outputs)
    assert builds == len(COMPONENTS), outputs  # the second process waited for the first one instead of rebuilding
    base = samples.sample_data_dir(tmp_path)
    assert all(samples._is_current(base, c) for c in COMPONENTS)
    assert not [p for p in base.iterdir() if p.name.startswith(".")]
    assert (
        len(list((base / "driving" / sample_video.RUN_NAME / "segmentation").glob("*.png"))) == sample_video.NUM_FRAMES
    )
