"""Embedded sample data, built on demand from real images shipped inside installed packages.

Every set is built deterministically, without network access, into a cache folder:
``<cache>/sample_data/v1/<component>/`` where ``<cache>`` is the ``root`` argument, else ``$DINO_LIB_CACHE``, else
``~/.cache/dino_lib``. Each component is built into a temporary folder and renamed into place, and a stamp file
``<component>.stamp.json`` beside it records the build format, a hash of the generating code and the versions of the
packages that supplied the images; a component whose stamp is missing or different is rebuilt. See docs/sample_data.md.

Configs and notebook parameters refer to the sets as ``sample:<component>[/<sub/path>]``, e.g. ``sample:images``
or ``sample:labelled/train``; :func:`resolve_data_path` turns that into a real path (the one place that does;
every reader of a ``data_path`` calls it). ``python -m dino_lib.sample_data [--root DIR] [--force]`` builds them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dino_lib.data import palettes, sample_digits, sample_histology, sample_photos, sample_video
from dino_lib.data.sample_digits import build_digits
from dino_lib.data.sample_histology import build_histology_regions, build_histology_tiles
from dino_lib.data.sample_photos import build_images, build_labelled
from dino_lib.data.sample_video import build_davis, build_driving
from dino_lib.utils.io import atomic_write_text

__all__ = ["SamplePaths", "ensure_sample_data", "resolve_data_path", "sample_data_dir", "SAMPLE_PREFIX", "COMPONENTS"]

logger = logging.getLogger(__name__)

SAMPLE_PREFIX = "sample:"
DATA_VERSION = "v1"  # folder name; bump together with incompatible layout changes
# Build format per component: bump one to force a rebuild of that component in existing caches.
_FORMAT = {
    "images": 1,
    "labelled": 1,
    "driving": 1,
    "davis": 1,
    "histology_tiles": 1,
    "histology_regions": 1,
    "digits": 1,
}
_BUILDERS: dict[str, Callable[[Path], int]] = {
    "images": build_images,
    "labelled": build_labelled,
    "driving": build_driving,
    "davis": build_davis,
    "histology_tiles": build_histology_tiles,
    "histology_regions": build_histology_regions,
    "digits": build_digits,
}
#: Names of the sample sets (the attributes of ``SamplePaths`` besides ``root``).
COMPONENTS: tuple[str, ...] = tuple(_BUILDERS)


@dataclass(frozen=True)
class SamplePaths:
    """Locations of the sample sets (see docs/sample_data.md for their layouts)."""

    root: Path  # <cache>/sample_data/v1
    images: Path  # pretraining image folder, <photo>/<photo>_NNN.jpg
    labelled: Path  # train/<class>/*.jpg and val/<class>/*.jpg
    driving: Path  # DATAROOT: <run>/image/*.jpg, <run>/segmentation/*.png
    davis: Path  # DAVIS root: JPEGImages/480p, Annotations/480p, ImageSets/2017/val.txt
    histology_tiles: Path  # <slide>_x<X>_y<Y>.jpg, 256 x 256
    histology_regions: Path  # <slide>_x<X>_y<Y>.png, 1024 x 1024
    digits: Path  # train/<digit>/*.png and val/<digit>/*.png, 32 x 32 (scikit-learn's handwritten digits)


def sample_data_dir(root: str | Path | None = None) -> Path:
    """``<cache>/sample_data/v1`` for a cache root (argument, else ``$DINO_LIB_CACHE``, else ``~/.cache/dino_lib``)."""
    if root is None:
        root = os.environ.get("DINO_LIB_CACHE") or Path.home() / ".cache" / "dino_lib"
    return Path(root).expanduser() / "sample_data" / DATA_VERSION


@functools.lru_cache(maxsize=1)
def _source_versions() -> dict[str, str | None]:
    """Versions of the packages that supply the photos and do the image processing (a change means new pixels)."""
    versions: dict[str, str | None] = {}
    for dist in ("scikit-image", "scikit-learn", "matplotlib", "pillow", "numpy", "scipy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of the modules that generate the data, so that a cache made by other code is rebuilt."""
    digest = hashlib.sha256()
    for module in (palettes, sample_photos, sample_video, sample_histology, sample_digits):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _stamp(component: str) -> dict[str, object]:
    return {"component": component, "format": _FORMAT[component], "code": _code_hash(), "versions": _source_versions()}


def _stamp_path(base: Path, component: str) -> Path:
    return base / f"{component}.stamp.json"


def _is_current(base: Path, component: str) -> bool:
    stamp = _stamp_path(base, component)
    if not (base / component).is_dir() or not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()) == _stamp(component)
    except (OSError, ValueError):
        return False


def _discard(path: Path) -> None:
    """Remove a folder by first renaming it aside, so no reader sees it half-deleted."""
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=f".trash-{path.name}-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _build_component(base: Path, component: str) -> None:
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{component}-", dir=base))
    try:
        count = _BUILDERS[component](tmp / component)
        _stamp_path(base, component).unlink(missing_ok=True)
        _discard(base / component)
        os.replace(tmp / component, base / component)
        atomic_write_text(_stamp_path(base, component), json.dumps(_stamp(component), indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built sample data %s (%d files) in %.1f s", component, count, time.perf_counter() - start)


@contextlib.contextmanager
def _build_lock(base: Path) -> Iterator[None]:
    """Serialise builders of one cache (several notebooks or test processes may start at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic renames alone keep each set consistent
        yield
        return
    with open(base.parent / f"{base.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_sample_data(root: str | Path | None = None, *, force: bool = False) -> SamplePaths:
    """Build the missing or stale sample sets and return their paths.

    Args:
        root: cache root; default ``$DINO_LIB_CACHE`` or ``~/.cache/dino_lib``. Data go to
            ``<root>/sample_data/v1/``.
        force: rebuild every set even if its stamp is current.

    Returns:
        The paths of all sets.
    """
    base = sample_data_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    todo = [c for c in COMPONENTS if force or not _is_current(base, c)]
    if todo:
        with _build_lock(base):
            for component in todo:
                # re-check under the lock: another process may have built it while this one waited
                if force or not _is_current(base, component):
                    _build_component(base, component)
    return SamplePaths(root=base, **{c: base / c for c in COMPONENTS})


def resolve_data_path(value: str | Path) -> Path:
    """Turn ``"sample:<set>[/<sub/path>]"`` into the path of that sample set (building it if needed).

    Any other string, and any ``Path`` (never reinterpreted), is a path: returned as ``Path(value).expanduser()``.

    Raises:
        ValueError: for an unknown set name or a sub-path that leaves the set.
    """
    if isinstance(value, Path) or not value.startswith(SAMPLE_PREFIX):
        return Path(value).expanduser()
    text = value
    rest = text[len(SAMPLE_PREFIX) :].strip("/")
    name, _, sub = rest.partition("/")
    if name not in COMPONENTS:
        raise ValueError(
            f"unknown sample data set {name!r} in {text!r}; expected 'sample:<set>[/<sub/path>]' "
            f"with <set> one of: {', '.join(COMPONENTS)}"
        )
    if sub and (".." in Path(sub).parts or Path(sub).is_absolute()):
        raise ValueError(f"sub-path {sub!r} in {text!r} must stay inside the sample set {name!r} (no '..')")
    path = getattr(ensure_sample_data(), name)
    return path / sub if sub else path
