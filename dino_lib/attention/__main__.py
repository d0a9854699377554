"""Command-line twin of the ``attention_maps`` notebook: attention maps, masks, figures and the video.

    python -m dino_lib.attention --config params/attention/ci.yaml
    python -m dino_lib.attention --config params/attention/dino_vits8.yaml \
        pretrained_weights=dino_deitsmall8_300ep_pretrain.pth image_dir=my_images video_input=clip.mp4

Keys are those of :class:`dino_lib.attention.config.AttentionConfig` (docs/attention.md).
"""

from __future__ import annotations

import json
import logging

from dino_lib.attention.config import AttentionConfig
from dino_lib.attention.pipeline import run_attention
from dino_lib.config import cli_config


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = cli_config(AttentionConfig, argv, description=__doc__ or "")
    summary = run_attention(cfg)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
