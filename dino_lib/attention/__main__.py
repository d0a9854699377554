"""Command-line twin of the ``attention_maps`` notebook: attention maps, masks, figures and the video.

    python -m dino_lib.attention --config params/attention_maps/ci.yaml
    python -m dino_lib.attention --config params/attention_maps/dino_vits8.yaml \
        pretrained_weights=dino_deitsmall8_300ep_pretrain.pth image_dir=my_images video_input=clip.mp4

Keys are those of :class:`dino_lib.attention.config.AttentionConfig` (docs/attention.md). With ``task: hipt`` the
config is a :class:`dino_lib.hierarchical.heatmaps_run.HIPTHeatmapConfig` and the run writes hierarchical (tile and
region) heat maps, the twin of the ``hipt_heatmaps`` notebook::

    python -m dino_lib.attention --config params/hipt_heatmaps/ci.yaml
"""

from __future__ import annotations

import json
import logging
import sys

from dino_lib.attention.config import AttentionConfig
from dino_lib.attention.pipeline import run_attention
from dino_lib.config import cli_config, requested_task


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if requested_task(argv) == "hipt":
        from dino_lib.hierarchical.heatmaps_run import HIPTHeatmapConfig, run_hipt_heatmaps

        hipt_cfg = cli_config(HIPTHeatmapConfig, argv, description=__doc__ or "")
        maps, _ = run_hipt_heatmaps(hipt_cfg)
        summary = {"task": "hipt", "output_dir": hipt_cfg.output_dir, "tile_maps": list(maps.tile_maps.shape),
                   "region_maps": None if maps.region_maps is None else list(maps.region_maps.shape)}  # fmt: skip
        print(json.dumps(summary, indent=2))
        return summary
    cfg = cli_config(AttentionConfig, argv, description=__doc__ or "")
    summary = run_attention(cfg)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
