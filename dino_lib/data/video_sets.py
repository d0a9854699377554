"""The folder layouts of video data sets: which runs or videos a root holds and where their frames and labels are.

Layouts:

* driving runs: ``DATAROOT/<run>/image/*.jpg`` and ``DATAROOT/<run>/segmentation/<same stem>.png`` (class ids,
  255 = ignore); a single run folder (holding ``image/`` or ``segmentation/``) is accepted as well;
* DAVIS 2017: ``ROOT/JPEGImages/<resolution>/<video>/*.jpg``, ``ROOT/Annotations/<resolution>/<video>/*.png``
  (indexed PNGs, index = object id), video list from ``ROOT/ImageSets/<listing>`` (e.g. ``2017/val.txt``) when
  present, else every video folder.

Propagation reads frames and labels, the metrics read labels only; both find their runs here. A problem raises the
caller's error class (a :class:`VideoSetError`) naming the folder, what was expected and the fix. Runs and videos
are natural-sorted (``run2`` before ``run10``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["VideoSetError", "RunFolders", "natural_key", "driving_run_folders", "davis_video_folders"]


class VideoSetError(ValueError):
    """A video data set does not have the expected layout; the message names the folder and the fix."""


@dataclass(frozen=True)
class RunFolders:
    """One run or video: its name, its frame folder and its label folder (either may be missing on disk)."""

    name: str
    images: Path
    labels: Path


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``frame2`` before ``frame10`` (digit runs compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def driving_run_folders(
    root: str | Path,
    *,
    marker: Literal["image", "segmentation"] = "image",
    runs: Sequence[str] | None = None,
    error: type[VideoSetError] = VideoSetError,
    hint: str = "",
) -> list[RunFolders]:
    """The runs of a driving DATAROOT: the sub-folders holding ``marker/`` (``image`` to read frames,
    ``segmentation`` for ground truth only), or ``root`` itself when it holds ``marker/``.

    Args:
        root: DATAROOT or one run folder.
        marker: the sub-folder a run must have.
        runs: only these runs, in this order (each must exist).
        error: the exception class raised.
        hint: appended to the "no runs found" message (e.g. how to select another layout).
    """
    root = Path(root)
    if not root.is_dir():
        raise error(f"data_path {root} does not exist; give the folder that holds the runs")
    if (root / marker).is_dir():  # a single run folder (the reference scripts silently find nothing)
        return [RunFolders(root.name, root / "image", root / "segmentation")]
    found = sorted((p for p in root.iterdir() if (p / marker).is_dir()), key=lambda p: natural_key(p.name))
    if runs:
        missing = [r for r in runs if not (root / r / marker).is_dir()]
        if missing:
            raise error(
                f"{root}: runs {missing} not found (no <run>/{marker} folder); available: {[p.name for p in found]}"
            )
        found = [root / r for r in runs]
    if not found:
        raise error(
            f"{root}: no runs found; expected DATAROOT/<run>/image/*.jpg and DATAROOT/<run>/segmentation/*.png "
            f"(or a run folder holding {marker}/){hint}"
        )
    return [RunFolders(p.name, p / "image", p / "segmentation") for p in found]


def davis_video_folders(
    root: str | Path,
    *,
    resolution: str = "480p",
    listing: str | None = "2017/val.txt",
    videos: Sequence[str] | None = None,
    required: Literal["JPEGImages", "Annotations"] = "JPEGImages",
    error: type[VideoSetError] = VideoSetError,
    hint: str = "",
) -> list[RunFolders]:
    """The videos of a DAVIS root whose ``required/<resolution>/<video>`` folder exists.

    Args:
        root: the DAVIS root.
        resolution: ``480p`` or ``Full-Resolution``.
        listing: the video list under ``ImageSets/`` (used when the file exists); None lists every video folder.
        videos: only these videos (overrides ``listing``).
        required: ``JPEGImages`` to read frames, ``Annotations`` for ground truth only.
        error: the exception class raised.
        hint: appended to the message of a missing ``required`` folder.
    """
    root = Path(root)
    folder = root / required / resolution
    if not folder.is_dir():
        raise error(
            f"{folder} not found; data_path must be a DAVIS root (JPEGImages/{resolution}/<video>/*.jpg, "
            f"Annotations/{resolution}/<video>/*.png){hint}"
        )
    list_file = root / "ImageSets" / listing if listing else None
    if videos:
        names, source = list(videos), "videos"
    elif list_file is not None and list_file.is_file():
        names, source = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()], str(list_file)
    else:
        names, source = sorted((p.name for p in folder.iterdir() if p.is_dir()), key=natural_key), str(folder)
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        raise error(f"{source} names videos without a folder in {folder}: {missing[:5]}; fix the list or the data")
    if not names:
        raise error(f"no DAVIS videos under {folder} (listed by {source})")
    return [RunFolders(n, root / "JPEGImages" / resolution / n, root / "Annotations" / resolution / n) for n in names]
