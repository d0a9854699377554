"""Build the embedded sample data and print where each set is (see docs/sample_data.md).

    python -m dino_lib.sample_data [--root DIR] [--force]

The sets themselves, ``sample:<set>`` resolution and the cache layout live in :mod:`dino_lib.data.samples`; its
public names are re-exported here for scripts that import them from this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from dino_lib.data.samples import (
    COMPONENTS,
    SAMPLE_PREFIX,
    SamplePaths,
    ensure_sample_data,
    resolve_data_path,
    sample_data_dir,
)

__all__ = ["SamplePaths", "ensure_sample_data", "resolve_data_path", "sample_data_dir", "SAMPLE_PREFIX", "COMPONENTS"]


def main(argv: list[str] | None = None) -> SamplePaths:
    """Command line: build the sample data and print where each set is."""
    parser = argparse.ArgumentParser(prog="python -m dino_lib.sample_data", description="Build the sample data.")
    parser.add_argument(
        "--root", type=Path, default=None, help="cache root (default $DINO_LIB_CACHE or ~/.cache/dino_lib)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild every set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = ensure_sample_data(args.root, force=args.force)
    for field in dataclasses.fields(paths):
        print(f"{field.name:18s} {getattr(paths, field.name)}")
    return paths


if __name__ == "__main__":
    main()
