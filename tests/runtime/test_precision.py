"""The precision policy: auto per device and CPU, explicit choices, the slow-bf16 warning, the old keys."""

from __future__ import annotations

import warnings

import pytest
import torch

from dino_lib.config import ConfigError, from_dict
from dino_lib.runtime import (
    PrecisionError,
    autocast,
    autocast_dtype,
    cpu_has_native_bf16,
    cpu_info,
    grad_scaler,
    legacy_precision,
    resolve_precision,
)
from dino_lib.runtime import precision as precision_mod

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(precision_mod, "_warned", set())


def test_auto_on_cpu_follows_the_injected_probe():
    assert resolve_precision("auto", CPU, cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", CPU, cpu_bf16=False) == "fp32"
    calls = []
    assert resolve_precision("auto", "cpu", cpu_bf16=lambda: calls.append(1) or True) == "bf16"
    assert calls == [1]  # a probe is called only when needed
    assert resolve_precision("fp32", CPU, cpu_bf16=lambda: calls.append(2) or True) == "fp32"
    assert calls == [1]


def test_auto_reads_the_override_variable(monkeypatch):
    monkeypatch.setenv("DINO_LIB_CPU_BF16", "1")
    assert cpu_has_native_bf16() and resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setenv("DINO_LIB_CPU_BF16", "0")
    assert not cpu_has_native_bf16() and resolve_precision("auto", CPU) == "fp32"
    monkeypatch.delenv("DINO_LIB_CPU_BF16")
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_info().native_bf16 else "fp32")


def test_cpu_flags_decide_native_bf16():
    info = cpu_info()
    assert info.model and info.threads >= 1
    assert info.native_bf16 == bool({"avx512_bf16", "amx_bf16", "bf16"} & set(info.flags))
    with open("/proc/cpuinfo") as fh:
        flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith(("flags", "Features"))), [])
    assert ("avx2" in info.flags) == ("avx2" in flags)


def test_explicit_bf16_on_a_cpu_without_it_warns_once_with_the_slowdown(monkeypatch):
    monkeypatch.setattr(precision_mod, "measure_bf16_slowdown", lambda: 42.0)
    with pytest.warns(RuntimeWarning, match=r"42\.0x slower than fp32"):
        assert resolve_precision("bf16", CPU, cpu_bf16=False) == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU, cpu_bf16=False) == "bf16"  # once per process
        assert resolve_precision("bf16", CPU, cpu_bf16=True) == "bf16"  # native: no warning at all


def test_fp16_is_a_cuda_precision():
    with pytest.warns(RuntimeWarning, match="fp16 needs a CUDA device"):
        assert resolve_precision("fp16", CPU) == "fp32"
    assert grad_scaler(CPU, "fp16") is None and grad_scaler(CPU, "bf16") is None


def test_unknown_names_are_errors():
    with pytest.raises(PrecisionError, match="expected one of"):
        resolve_precision("half", CPU)
    with pytest.raises(PrecisionError, match="resolved precision"):
        autocast_dtype("auto")


def test_autocast_context_matches_the_precision():
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with autocast(CPU, "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (x @ w).dtype == torch.float32


def test_old_keys_map_to_precision_with_a_deprecation_warning():
    from dino_lib.attention.config import AttentionConfig
    from dino_lib.eval.config import EvalConfig
    from dino_lib.propagation.config import PropagationConfig

    assert legacy_precision("dtype", "bfloat16") == "bf16" and legacy_precision("amp", False) == "fp32"
    with pytest.warns(FutureWarning, match=r"amp in e\.yaml is deprecated.*precision: bf16"):
        assert from_dict(EvalConfig, {"amp": True}, source="e.yaml").precision == "bf16"
    with pytest.warns(FutureWarning, match="dtype"):
        assert from_dict(AttentionConfig, {"dtype": "float32"}).precision == "fp32"
    with pytest.warns(FutureWarning, match="dtype, score_dtype"):
        assert from_dict(PropagationConfig, {"dtype": "float32", "score_dtype": "bfloat16"}).precision == "fp32"
    with pytest.warns(FutureWarning):
        # an explicit precision wins over an old key
        assert from_dict(PropagationConfig, {"score_dtype": "bfloat16", "precision": "fp32"}).precision == "fp32"
    with pytest.raises(ConfigError, match="dtype: deprecated key with unknown value 'float64'"):
        from_dict(AttentionConfig, {"dtype": "float64"})


@pytest.mark.parametrize(
    "module, cls",
    [
        ("dino_lib.train.config", "TrainConfig"),
        ("dino_lib.features.config", "FeatureConfig"),
        ("dino_lib.hierarchical.extraction", "RegionExtractionConfig"),
        ("dino_lib.eval.config", "EvalConfig"),
        ("dino_lib.propagation.config", "PropagationConfig"),
        ("dino_lib.attention.config", "AttentionConfig"),
    ],
)
def test_every_config_speaks_one_vocabulary(module, cls):
    import dataclasses
    import importlib

    config = getattr(importlib.import_module(module), cls)
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert fields["precision"].default == "auto"
    assert tuple(fields["precision"].metadata["choices"]) == ("auto", "fp32", "bf16", "fp16")
    assert not {"dtype", "amp", "score_dtype"} & set(fields)
