"""Command lines of the hierarchical (HIPT) steps, by the ``task`` of the config.

* ``task: regions`` - region extraction, the twin of the ``extract_region_features`` notebook (:func:`extract_main`);
  also reached as ``python -m dino_lib.features`` (under ``torchrun`` the regions are sharded over the processes and
  rank 0 merges the manifest).
* ``task: hipt`` - hierarchical heat maps, the twin of the ``hipt_heatmaps`` notebook (:func:`heatmaps_main`); also
  reached as ``python -m dino_lib.attention``.

Examples::

    python -m dino_lib.hierarchical --config params/extract_region_features/ci.yaml
    python -m dino_lib.hierarchical --config params/hipt_heatmaps/ci.yaml
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from dino_lib.cli import entry, parse_config, requested_task, run_folder
from dino_lib.config import ConfigError
from dino_lib.hierarchical.extraction import ExtractionResult, RegionExtractionConfig, extract_regions
from dino_lib.hierarchical.heatmaps_run import HIPTHeatmapConfig, run_hipt_heatmaps

PROG = "python -m dino_lib.hierarchical"

log = logging.getLogger(__name__)


def extract_main(argv: Sequence[str] | None = None, *, prog: str = "python -m dino_lib.features") -> ExtractionResult:
    """Region extraction from a command line (``task: regions``)."""
    from dino_lib.runtime import destroy_distributed, init_distributed, resolve_device

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(RegionExtractionConfig, argv, prog=prog,
                       description="Extract region tensors [g*g, D] (HIPT stage 2 input)")  # fmt: skip
    init_distributed(resolve_device(cfg.device))
    try:
        with run_folder(cfg):
            result = extract_regions(cfg)
    finally:
        destroy_distributed()
    log.info("wrote %d regions (%d skipped) in %.1fs -> %s", result.written, result.skipped, result.seconds,
             result.manifest)  # fmt: skip
    return result


def heatmaps_main(argv: Sequence[str] | None = None, *, prog: str = "python -m dino_lib.attention") -> dict:
    """Hierarchical heat maps from a command line (``task: hipt``): ``heatmaps.npz`` and the overlay PNGs."""
    from dino_lib.viz.hipt import save_hipt_overlays

    cfg = parse_config(HIPTHeatmapConfig, argv, prog=prog, description=__doc__ or "")
    with run_folder(cfg):
        maps, _ = run_hipt_heatmaps(cfg)
        save_hipt_overlays(maps, cfg.output_dir, cmap=cfg.cmap, alpha=cfg.alpha)
    summary = {"task": "hipt", "output_dir": cfg.output_dir, "tile_maps": list(maps.tile_maps.shape),
               "region_maps": None if maps.region_maps is None else list(maps.region_maps.shape)}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: Sequence[str] | None = None) -> object:
    argv = list(sys.argv[1:] if argv is None else argv)
    task = requested_task(argv)
    if task == "regions":
        return extract_main(argv, prog=PROG)
    if task == "hipt":
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        return heatmaps_main(argv, prog=PROG)
    if task is None and {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    raise ConfigError(f"task: expected 'regions' (region extraction) or 'hipt' (heat maps), found {task!r}")


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
