"""Every task takes its precision from the runtime: with ``precision: auto`` it autocasts in bf16 exactly when the
runtime reports native bf16 (forced here with ``DINO_LIB_CPU_BF16``), and runs fp32 otherwise.

A spy wraps ``torch.autocast`` (the runtime's only way to change precision) and records the dtypes used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from dino_lib.runtime import precision as precision_mod

TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2}


@pytest.fixture()
def autocast_log(monkeypatch):
    """Dtypes of every enabled ``torch.autocast`` entered during the test."""
    real = torch.autocast
    seen: list[torch.dtype] = []

    def spy(device_type, dtype=None, enabled=True, **kw):
        if enabled and dtype is not None:
            seen.append(dtype)
        return real(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    monkeypatch.setattr(precision_mod, "_warned", set())
    return seen


@pytest.fixture(params=["1", "0"], ids=["native-bf16", "no-bf16"])
def cpu_bf16(request, monkeypatch) -> bool:
    monkeypatch.setenv("DINO_LIB_CPU_BF16", request.param)
    return request.param == "1"


def _expect(seen: list[torch.dtype], native: bool) -> None:
    if native:
        assert seen and set(seen) == {torch.bfloat16}, seen
    else:
        assert seen == [], seen


def test_training(tiny_train_cfg, autocast_log, cpu_bf16):
    from dino_lib.runtime import DistInfo
    from dino_lib.train.setup import build_run

    parts = build_run(tiny_train_cfg(precision="auto"), DistInfo(), torch.device("cpu"))
    assert parts.precision == ("bf16" if cpu_bf16 else "fp32")


def test_training_step_autocasts(tiny_train_cfg, autocast_log, cpu_bf16):
    from dino_lib.train.loop import train

    train(tiny_train_cfg(precision="auto", epochs=1, warmup_epochs=0, max_images=4, log_every=1))
    _expect(autocast_log, cpu_bf16)


def test_feature_extraction_and_cache(tmp_path, autocast_log, cpu_bf16, labelled_folder):
    from dino_lib.data.labelled import LabelledImageFolder
    from dino_lib.features.cache import cached_extract
    from dino_lib.features.transforms import eval_transform
    from dino_lib.models import build_backbone

    dataset = LabelledImageFolder(labelled_folder / "train", eval_transform(40, 32))
    model = build_backbone("vit_tiny", patch_size=16, **TINY_VIT)
    cached_extract(model, dataset, cache_dir=tmp_path, name="t", precision="auto", progress=False)
    _expect(autocast_log, cpu_bf16)
    stored = torch.load(next(tmp_path.glob("t-*.pt")), weights_only=True)
    assert stored["meta"]["precision"] == ("bf16" if cpu_bf16 else "fp32")


def test_evaluation(tmp_path, autocast_log, cpu_bf16, labelled_folder):
    from dino_lib.config import from_dict
    from dino_lib.eval.config import EvalConfig
    from dino_lib.eval.run import run_knn
    from dino_lib.models import build_backbone

    cfg = from_dict(
        EvalConfig,
        {"data_path": str(labelled_folder), "output_dir": str(tmp_path), "resize": 40, "crop": 32, "device": "cpu",
         "num_workers": 0, "nb_knn": [3]},
    )  # fmt: skip
    run_knn(cfg, build_backbone("vit_tiny", patch_size=16, **TINY_VIT), progress=False)
    _expect(autocast_log, cpu_bf16)


def test_propagation(autocast_log, cpu_bf16):
    from dino_lib.config import from_dict
    from dino_lib.propagation.config import PropagationConfig
    from dino_lib.propagation.run import run_precision

    cpu = torch.device("cpu")
    cfg = from_dict(PropagationConfig, {"device": "cpu"})
    assert run_precision(cfg, cpu) == ("bf16" if cpu_bf16 else "fp32")
    parity = from_dict(PropagationConfig, {"dataset": "davis", "protocol": "davis_parity", "device": "cpu"})
    assert run_precision(parity, cpu) == "fp32"  # the reference protocol is fp32 everywhere


def test_propagation_backbone_autocasts(tmp_path, autocast_log, cpu_bf16):
    from dino_lib.propagation.backbones import build_extractor
    from dino_lib.propagation.features import FeatureProvider
    from dino_lib.propagation.geometry import resize_geometry
    from dino_lib.runtime import resolve_precision

    frame = tmp_path / "f.png"
    Image.fromarray(data.rocket()[:48, :64]).save(frame)
    ext = build_extractor("vit_tiny", patch_size=16, model_kwargs=TINY_VIT)
    cpu = torch.device("cpu")
    provider = FeatureProvider(
        ext, [frame], resize_geometry((48, 64), 16), device=cpu, precision=resolve_precision("auto", cpu)
    )
    assert provider[0].dtype == torch.float32
    _expect(autocast_log, cpu_bf16)


def test_attention_maps(tmp_path, autocast_log, cpu_bf16):
    from dino_lib.attention.config import AttentionConfig
    from dino_lib.attention.pipeline import run_attention
    from dino_lib.config import from_dict

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(data.chelsea()[::4, ::4]).save(images / "cat.png")
    cfg = from_dict(
        AttentionConfig,
        {"depth": 1, "image_size": [32], "image_dir": str(images), "output_dir": str(tmp_path / "out"),
         "video_input": None, "device": "cpu"},
    )  # fmt: skip
    run_attention(cfg)
    _expect(autocast_log, cpu_bf16)


def test_region_extraction(tmp_path, autocast_log, cpu_bf16, sample_paths):
    from dino_lib.config import from_dict
    from dino_lib.hierarchical.extraction import RegionExtractionConfig, extract_regions

    src = tmp_path / "regions"
    src.mkdir()
    img = np.asarray(Image.open(sorted(Path(sample_paths.histology_regions).glob("*.png"))[0]).convert("RGB"))
    Image.fromarray(img[:128, :128]).save(src / "s_x0_y0.png")
    cfg = from_dict(
        RegionExtractionConfig,
        {"data_path": str(src), "output_dir": str(tmp_path / "out"), "tile_size": 64, "region_size": 128,
         "input_size": 32, "fallback_encoder": TINY_VIT, "device": "cpu"},
    )  # fmt: skip
    assert extract_regions(cfg).written == 1
    _expect(autocast_log, cpu_bf16)
