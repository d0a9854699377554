"""Typed configurations: validation messages, overrides, run records."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Literal

import pytest
import torch
import yaml

import dino_lib
from dino_lib.cli import parse_config
from dino_lib.config import ConfigError, from_dict, load_config, param, parse_overrides, save_run_config


@dataclasses.dataclass
class Optim:
    lr: float = param(0.0005, gt=0, help="base learning rate")
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class Cfg:
    arch: str = param("vit_small", choices=["vit_tiny", "vit_small", "vit_base"])
    patch_size: int = param(16, ge=1)
    epochs: int = param(100, ge=1, le=1000)
    momentum_teacher: float = param(0.996, ge=0, lt=1)
    use_bf16: bool = False
    pretrained_weights: str | None = None
    crops: list[int] = dataclasses.field(default_factory=lambda: [224, 96])
    mode: Literal["faithful", "modern"] = "faithful"
    optim: Optim = dataclasses.field(default_factory=Optim)
    extra: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if self.arch == "vit_base" and self.patch_size == 8 and self.epochs > 500:
            raise ConfigError("vit_base/8 for more than 500 epochs is not supported here")


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_file_values(tmp_path: Path) -> None:
    cfg = load_config(Cfg, write(tmp_path / "c.yaml", {"epochs": 3, "optim": {"lr": 1}}))
    assert cfg.epochs == 3 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.arch == "vit_small" and cfg.optim.betas == (0.9, 0.999)
    assert load_config(Cfg) == Cfg()


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        load_config(Cfg, write(tmp_path / "c.yaml", {"epoch": 3}))
    with pytest.raises(ConfigError, match=r"'optim\.lrr' \(did you mean 'optim\.lr'\?\)"):
        load_config(Cfg, None, ["optim.lrr=0.1"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": "ten"}, r"epochs: expected an integer, found 'ten' \(str\)"),
        ({"epochs": 2.5}, r"epochs: expected an integer"),
        ({"use_bf16": "yes"}, r"use_bf16: expected true or false"),
        ({"momentum_teacher": "x"}, r"momentum_teacher: expected a number"),
        ({"crops": 224}, r"crops: expected a list"),
        ({"crops": [224, "a"]}, r"crops\[1\]: expected an integer"),
        ({"optim": {"betas": [0.9]}}, r"optim\.betas: expected a list of 2 values"),
        ({"optim": 3}, r"optim: expected a mapping of Optim fields"),
        ({"mode": "fast"}, r"mode: expected one of \['faithful', 'modern'\], found 'fast'"),
        ({"pretrained_weights": 3}, r"pretrained_weights: expected str \| None"),
    ],
)
def test_wrong_type_names_key_and_expected_type(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epochs=0"], r"epochs: must be >= 1, found 0"),
        (["epochs=1001"], r"epochs: must be <= 1000"),
        (["momentum_teacher=1.0"], r"momentum_teacher: must be < 1"),
        (["optim.lr=0"], r"optim\.lr: must be > 0"),
        (["arch=vit_huge"], r"arch: expected one of \['vit_tiny', 'vit_small', 'vit_base'\], found 'vit_huge'"),
    ],
)
def test_bounds_and_choices(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, overrides)


def test_validate_hook_runs() -> None:
    with pytest.raises(ConfigError, match="vit_base/8"):
        load_config(Cfg, None, ["arch=vit_base", "patch_size=8", "epochs=800"])


def test_overrides_parse_yaml_scalars_and_nest() -> None:
    parsed = parse_overrides(["optim.lr=1e-3", "use_bf16=true", "crops=[32, 16]", "pretrained_weights=null", "a="])
    assert parsed == {"optim": {"lr": 1e-3}, "use_bf16": True, "crops": [32, 16], "pretrained_weights": None, "a": ""}
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["epochs"])


def test_overrides_merge_over_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"epochs": 3, "optim": {"lr": 0.1, "betas": [0.5, 0.6]}})
    cfg = load_config(Cfg, path, ["optim.lr=0.2", "arch=vit_tiny"])
    assert (cfg.epochs, cfg.arch, cfg.optim.lr, cfg.optim.betas) == (3, "vit_tiny", 0.2, (0.5, 0.6))
    cfg = parse_config(Cfg, ["--config", str(path), "epochs=7"])  # the command line: file, then overrides
    assert cfg.epochs == 7 and cfg.optim.lr == 0.1


def test_save_run_config_records_versions_and_reloads(tmp_path: Path) -> None:
    cfg = load_config(Cfg, None, ["epochs=5", "optim.lr=0.01", "pretrained_weights=/w.pth"])
    path = save_run_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert not [p for p in path.parent.iterdir() if p.name != "config.yaml"]  # no temporary left
    data = yaml.safe_load(path.read_text())
    meta = data["_meta"]
    assert meta["torch_version"] == torch.__version__
    assert meta["dino_lib_version"] == dino_lib.__version__
    root = Path(dino_lib.__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert meta["git_commit"] == (head or None)
    assert data["crops"] == [224, 96] and data["optim"]["betas"] == [0.9, 0.999]
    assert load_config(Cfg, path) == cfg  # _meta is ignored on reload


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*absent\.yaml"):
        load_config(Cfg, tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping .* found list"):
        load_config(Cfg, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(Cfg, tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(Cfg, tmp_path / "empty.yaml") == Cfg()


def test_missing_required_key() -> None:
    @dataclasses.dataclass
    class Needs:
        data_path: str

    with pytest.raises(ConfigError, match="missing required key 'data_path'"):
        from_dict(Needs, {})


def test_exponent_floats_in_files_and_overrides(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads ``5e-4`` as a string; learning rates are written that way, so accept them."""
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 5e-4\n")
    assert load_config(Cfg, tmp_path / "c.yaml").optim.lr == 5e-4
    assert load_config(Cfg, None, ["momentum_teacher=9.96E-1"]).momentum_teacher == 0.996
    assert load_config(Cfg, None, ["arch=vit_tiny"]).arch == "vit_tiny"
