"""Evaluation runs from an :class:`EvalConfig`: shared by ``python -m dino_lib.eval`` and the notebook.

:func:`load_backbone` builds and loads the frozen backbone, :func:`run_knn` extracts (or re-uses cached) features
and runs the weighted k-NN for every k, :func:`run_linear` trains (or only validates) a linear probe. Each returns
plain data and writes JSON into ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from dino_lib.config import to_dict
from dino_lib.data.labelled import LabelledSplits, labelled_splits
from dino_lib.eval import linear
from dino_lib.eval.config import EvalConfig
from dino_lib.eval.knn import knn_evaluate
from dino_lib.features.backbone import eval_backbone_from_config
from dino_lib.features.cache import cached_extract, dump_reference_features, feature_cache_meta, load_reference_features
from dino_lib.features.extract import ExtractedFeatures, backbone_features
from dino_lib.features.transforms import eval_transform, linear_train_transform
from dino_lib.runtime import autocast, is_main_process, resolve_device, resolve_precision
from dino_lib.utils.io import atomic_write_text, safe_torch_load

logger = logging.getLogger(__name__)

__all__ = ["KnnRun", "load_backbone", "run_knn", "run_linear", "run_evaluation"]


@dataclasses.dataclass
class KnnRun:
    """k-NN results plus what the notebook shows: features, labels, class names and the datasets."""

    results: dict[int, dict[str, float]]
    train: ExtractedFeatures
    val: ExtractedFeatures
    splits: LabelledSplits

    def table(self) -> Any:
        """A pandas DataFrame with one row per k."""
        import pandas as pd

        return pd.DataFrame([{"k": k, **v} for k, v in self.results.items()]).set_index("k")


def load_backbone(cfg: EvalConfig) -> nn.Module:
    model, _ = eval_backbone_from_config(cfg)
    return model.to(resolve_device(cfg.device))


def _precision(cfg: EvalConfig) -> str:
    """The precision feature extraction runs in (``auto`` resolved for this device)."""
    return resolve_precision(cfg.precision, resolve_device(cfg.device))


def _write_json(cfg: EvalConfig, name: str, payload: dict[str, Any]) -> None:
    if is_main_process():  # every process holds the same results; one writes them
        atomic_write_text(Path(cfg.output_dir) / name, json.dumps({"config": to_dict(cfg), **payload}, indent=1))


def run_knn(cfg: EvalConfig, backbone: nn.Module, *, progress: bool = True) -> KnnRun:
    """Weighted k-NN for every ``k`` in ``cfg.nb_knn``; writes ``knn_results.json``."""
    transform = eval_transform(cfg.resize, cfg.crop)
    splits = labelled_splits(cfg.data_path, transform, transform)
    extract = {
        "batch_size": cfg.batch_size_per_gpu,
        "device": resolve_device(cfg.device),
        "precision": _precision(cfg),
        "num_workers": cfg.num_workers,
        "progress": progress,
    }
    meta = feature_cache_meta(
        backbone, splits.val, precision=extract["precision"], n_last_blocks=1, avgpool=False, interleave=False
    )
    if cfg.load_features:
        train, val = load_reference_features(cfg.load_features, expected_meta=meta)
    else:
        train = cached_extract(backbone, splits.train, cache_dir=cfg.cache_dir, name="train", **extract)
        val = cached_extract(backbone, splits.val, cache_dir=cfg.cache_dir, name="val", **extract)
    if cfg.dump_features and is_main_process():
        dump_reference_features(cfg.dump_features, train, val, meta)
    num_classes = len(splits.classes)
    results = knn_evaluate(
        train.features, train.labels, val.features, val.labels, cfg.nb_knn, cfg.temperature, num_classes
    )
    _write_json(
        cfg,
        "knn_results.json",
        {"knn": {str(k): v for k, v in results.items()}, "num_train": len(train.labels), "num_val": len(val.labels)},
    )
    return KnnRun(results, train, val, splits)


def _features_fn(cfg: EvalConfig, backbone: nn.Module):  # noqa: ANN202 - a closure
    device, precision = resolve_device(cfg.device), _precision(cfg)

    def fn(images: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return backbone_features(
                backbone,
                images,
                n_last_blocks=cfg.n_last_blocks,
                avgpool=cfg.avgpool_patchtokens,
                interleave=cfg.interleave,
            )

    return fn


def _linear_signature(cfg: EvalConfig, backbone: nn.Module, dim: int, num_labels: int) -> dict[str, Any]:
    from dino_lib.models import state_dict_hash

    keys = (
        "data_path",
        "n_last_blocks",
        "avgpool_patchtokens",
        "avgpool_layout",
        "linear_mode",
        "resize",
        "crop",
        "lr",
        "batch_size_per_gpu",
        "epochs",
        "seed",
    )
    return {
        "weights_hash": state_dict_hash(backbone),
        "dim": dim,
        "num_labels": num_labels,
        **{k: getattr(cfg, k) for k in keys},
        "precision": _precision(cfg),
    }


def run_linear(cfg: EvalConfig, backbone: nn.Module, *, progress: bool = True) -> dict[str, Any]:
    """Train (or, with ``linear_weights``, only validate) a linear probe; writes ``linear_results.json``."""
    device = resolve_device(cfg.device)
    backbone.eval()
    splits = labelled_splits(cfg.data_path, linear_train_transform(cfg.crop), eval_transform(cfg.resize, cfg.crop))
    num_labels = cfg.num_labels or len(splits.classes)
    if num_labels < len(splits.classes):
        raise ValueError(f"num_labels={num_labels} but {cfg.data_path} has {len(splits.classes)} classes")
    features_fn = _features_fn(cfg, backbone)
    out_dir = Path(cfg.output_dir) / "linear"
    if cfg.linear_mode == "cached":
        layout = {
            "n_last_blocks": cfg.n_last_blocks,
            "avgpool": cfg.avgpool_patchtokens,
            "interleave": cfg.interleave,
            "precision": _precision(cfg),
            "batch_size": cfg.batch_size_per_gpu,
            "device": device,
            "num_workers": cfg.num_workers,
            "progress": progress,
        }
        val_tf = eval_transform(cfg.resize, cfg.crop)  # no augmentation: features computed once (non-faithful)
        cached = labelled_splits(cfg.data_path, val_tf, val_tf)
        tr = cached_extract(backbone, cached.train, cache_dir=cfg.cache_dir, name="linear-train", **layout)
        va = cached_extract(backbone, cached.val, cache_dir=cfg.cache_dir, name="linear-val", **layout)
        train_data, val_data = TensorDataset(tr.features, tr.labels), TensorDataset(va.features, va.labels)
        features_fn, num_workers = (lambda x: x), 0  # noqa: E731
        dim = tr.features.shape[1]
    else:
        train_data, val_data, num_workers = splits.train, splits.val, cfg.num_workers
        with torch.no_grad():
            dim = features_fn(torch.zeros(1, 3, cfg.crop, cfg.crop, device=device)).shape[-1]
    if cfg.linear_weights:
        classifier = linear.LinearClassifier(dim, num_labels).to(device)
        linear.load_linear_state(classifier, safe_torch_load(cfg.linear_weights), cfg.linear_weights)
        loader = torch.utils.data.DataLoader(val_data, batch_size=cfg.batch_size_per_gpu, num_workers=num_workers)
        stats = linear.evaluate_linear(classifier, loader, lambda x: features_fn(x).float(), device, num_labels)
        result: dict[str, Any] = {"best_acc": stats["acc1"], "last_acc": stats["acc1"], "last": stats, "history": []}
    else:
        result = linear.train_linear_probe(
            features_fn,
            train_data,
            val_data,
            dim=dim,
            num_labels=num_labels,
            hparams=linear.ProbeHyperparameters(
                epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size_per_gpu, val_freq=cfg.val_freq
            ),
            output_dir=out_dir,
            device=device,
            num_workers=num_workers,
            seed=cfg.seed,
            progress=progress,
            signature=_linear_signature(cfg, backbone, dim, num_labels),
        )
    result.update({"feature_dim": dim, "num_labels": num_labels, "mode": cfg.linear_mode})
    _write_json(cfg, "linear_results.json", {"linear": result})
    return result


def run_evaluation(cfg: EvalConfig, *, progress: bool = True) -> dict[str, Any]:
    """Everything ``cfg.task`` asks for; returns ``{"knn": {k: {...}}, "linear": {...}}``."""
    from dino_lib.data.labelled import check_folder_images
    from dino_lib.utils.rundir import mark_started

    torch.manual_seed(cfg.seed)
    if not cfg.load_features or cfg.task != "knn":
        splits = labelled_splits(cfg.data_path, None, None)
        check_folder_images([splits.val, splits.train])
    backbone = load_backbone(cfg)
    mark_started(cfg.output_dir)  # inputs checked: results written from here on are kept
    summary: dict[str, Any] = {}
    if cfg.task in ("knn", "both"):
        summary["knn"] = run_knn(cfg, backbone, progress=progress).results
    if cfg.task in ("linear", "both"):
        summary["linear"] = run_linear(cfg, backbone, progress=progress)
    return summary
