"""``python -m dino_lib.features --config FILE [key=value ...]``: frozen feature extraction.

With ``task: regions`` in the file (or ``task=regions`` on the command line) the run is handed to
:mod:`dino_lib.hierarchical.extraction` (HIPT region tensors). Otherwise every split of ``data_path`` is encoded with
the reference evaluation transform and written to ``output_dir/<split>_features.pt`` (``features``, ``labels``,
``classes``, ``paths``, ``meta``), plus the reference's ``trainfeat.pth`` / ``testfeat.pth`` / ``trainlabels.pth``
/ ``testlabels.pth`` when both ``train`` and ``val`` are extracted (loadable with ``load_features``).

Examples::

    python -m dino_lib.features data_path=sample:labelled arch=vit_tiny depth=2 resize=64 crop=56 num_workers=0
    torchrun --nproc_per_node 4 -m dino_lib.features data_path=/data/imagenet pretrained_weights=ckpt.pth
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dino_lib.cli import entry, parse_config, requested_task, run_folder
from dino_lib.features.config import FeatureConfig
from dino_lib.runtime import is_main_process
from dino_lib.runtime.ranks import setup_config_process
from dino_lib.utils.io import atomic_torch_save


def extract_images(cfg: FeatureConfig) -> dict[str, Path]:
    """Encode every split of ``cfg.data_path``; returns ``{split: written file}``."""
    from dino_lib.data.labelled import LabelledImageFolder, check_folder_images
    from dino_lib.data.samples import resolve_data_path
    from dino_lib.features.backbone import eval_backbone_from_config
    from dino_lib.features.cache import cached_extract, dump_reference_features, feature_cache_meta
    from dino_lib.features.transforms import eval_transform
    from dino_lib.runtime import resolve_device, resolve_precision
    from dino_lib.utils.rundir import mark_started

    root = resolve_data_path(cfg.data_path)
    folders, classes = [], None
    for split in cfg.splits:  # every split is listed and decoded before the model is built
        folders.append(LabelledImageFolder(root / split, None, classes=classes))
        classes = folders[-1].classes
    check_folder_images(folders[::-1])  # the last split (usually val) first
    device = resolve_device(cfg.device)
    model, _ = eval_backbone_from_config(cfg)
    transform = eval_transform(cfg.resize, cfg.crop)
    kwargs = {
        "n_last_blocks": cfg.n_last_blocks,
        "avgpool": cfg.avgpool_patchtokens,
        "interleave": cfg.interleave,
        "precision": resolve_precision(cfg.precision, device),
        "batch_size": cfg.batch_size_per_gpu,
        "device": device,
        "num_workers": cfg.num_workers,
    }
    mark_started(cfg.output_dir)
    written, results, classes = {}, {}, None
    main_rank = is_main_process()
    for split in cfg.splits:
        dataset = LabelledImageFolder(root / split, transform, classes=classes)
        classes = dataset.classes
        result = cached_extract(model, dataset, cache_dir=cfg.cache_dir, name=split, **kwargs)
        results[split] = result
        meta = feature_cache_meta(
            model, dataset, **{k: kwargs[k] for k in ("n_last_blocks", "avgpool", "interleave", "precision")}
        )
        path = Path(cfg.output_dir) / f"{split}_features.pt"
        if main_rank:
            atomic_torch_save(
                {
                    "features": result.features,
                    "labels": result.labels,
                    "classes": dataset.classes,
                    "paths": [str(p) for p, _ in dataset.samples],
                    "meta": meta,
                },
                path,
            )
        written[split] = path
    if main_rank and "train" in results and "val" in results:
        dump_reference_features(cfg.output_dir, results["train"], results["val"], meta)
    return written


PROG = "python -m dino_lib.features"
_EPILOG = "With task=regions (or task: regions in the file) the keys are those of RegionExtractionConfig: see "\
    "task=regions --help."  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Path] | object:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if requested_task(argv) == "regions":
        from dino_lib.hierarchical import __main__ as hierarchical_cli

        return hierarchical_cli.extract_main(argv, prog=PROG)
    cfg = parse_config(FeatureConfig, argv, prog=PROG, description=__doc__ or "", epilog=_EPILOG)
    setup_config_process(cfg)
    with run_folder(cfg):
        written = extract_images(cfg)
    if is_main_process():
        print(json.dumps({k: str(v) for k, v in written.items()}, indent=1))
    return written


if __name__ == "__main__":
    raise SystemExit(entry(main, PROG))
