"""Command-line twin of the ``attention_maps`` notebook: attention maps, masks, figures and the video.

    python -m dino_lib.attention --config params/attention_maps/ci.yaml
    python -m dino_lib.attention --config params/attention_maps/dino_vits8.yaml \
        pretrained_weights=dino_deitsmall8_300ep_pretrain.pth image_dir=my_images video_input=clip.mp4

Keys are those of :class:`dino_lib.attention.config.AttentionConfig` (docs/attention.md). With ``task: hipt`` the
config is a :class:`dino_lib.hierarchical.heatmaps_run.HIPTHeatmapConfig` and the run writes hierarchical (tile and
region) heat maps (:func:`dino_lib.hierarchical.__main__.heatmaps_main`), the twin of the ``hipt_heatmaps`` notebook::

    python -m dino_lib.attention --config params/hipt_heatmaps/ci.yaml
"""

from __future__ import annotations

import json
import logging
import sys

from dino_lib.attention.config import AttentionConfig
from dino_lib.attention.pipeline import run_attention, write_summary
from dino_lib.cli import entry, parse_config, requested_task, run_folder
from dino_lib.viz.attention_run import write_run_figures

PROG = "python -m dino_lib.attention"
_EPILOG = "With task=hipt (or task: hipt in the file) the keys are those of HIPTHeatmapConfig: see task=hipt --help."


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if requested_task(argv) == "hipt":
        from dino_lib.hierarchical import __main__ as hierarchical_cli

        return hierarchical_cli.heatmaps_main(argv, prog=PROG)
    cfg = parse_config(AttentionConfig, argv, prog=PROG, description=__doc__ or "", epilog=_EPILOG)
    with run_folder(cfg):
        run = run_attention(cfg)  # maps, masks, reference PNGs
        write_run_figures(run)  # figures, patch-PCA figure, video
        summary = write_summary(run)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
