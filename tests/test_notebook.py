"""The notebook parameter helper: unknown names fail with a suggestion, overrides reach every key, papermill runs
are described by what papermill injects, and ``'demo'`` weights point at the demo's teacher."""

from __future__ import annotations

import pytest

from dino_lib.attention.config import AttentionConfig
from dino_lib.config import ConfigError
from dino_lib.notebook import config_class, notebook_config, parameter_names
from dino_lib.train.config import TrainConfig

CELL = (
    "# Parameters (defaults = ci.yaml)\n"
    "epochs: int = 2\nwarmup_epochs: int = 1\narch: str = 'vit_tiny'\noverrides: dict = {}\n"
)


def _namespace(**values):
    base = {"epochs": 2, "warmup_epochs": 1, "arch": "vit_tiny", "overrides": {}, "plt": object()}
    base.update(values)
    return base


def test_misspelled_injected_parameter_fails_with_suggestion():
    history = [CELL, "# Parameters\nepoch = 3\n", "cfg = notebook_config(...)"]
    with pytest.raises(ConfigError, match=r"'epoch' \(did you mean 'epochs'\?\)"):
        notebook_config(TrainConfig, _namespace(epoch=3), history=history, logging_level=None)


def test_misspelled_threshold_in_attention_maps_fails():
    cell = "# Parameters\nthreshold = 0.6\ntreshold = 0.3\n"
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        notebook_config(AttentionConfig, {"threshold": 0.6, "treshold": 0.3}, history=[cell, ""], logging_level=None)


def test_parameters_cell_values_and_overrides_reach_the_config():
    ns = _namespace(epochs=5, overrides={"weight_decay": 0.05, "slurm.nodes": 3})
    cfg = notebook_config(TrainConfig, ns, history=[CELL, ""], logging_level=None)
    assert (cfg.epochs, cfg.arch, cfg.weight_decay, cfg.slurm.nodes) == (5, "vit_tiny", 0.05, 3)


def test_overrides_are_validated_like_parameters():
    with pytest.raises(ConfigError, match="did you mean 'weight_decay'"):
        notebook_config(TrainConfig, _namespace(overrides={"weight_decy": 0.1}), history=[CELL, ""], logging_level=None)
    with pytest.raises(ConfigError, match="expected a number"):
        notebook_config(TrainConfig, _namespace(overrides={"lr": "fast"}), history=[CELL, ""], logging_level=None)
    with pytest.raises(ConfigError, match="set both as a parameter and in 'overrides'"):
        notebook_config(TrainConfig, _namespace(overrides={"epochs": 3}), history=[CELL, ""], logging_level=None)


def test_papermill_injection_starts_from_the_library_defaults():
    # The parameters cell says epochs=2 (its CI value); papermill injected only arch: epochs is the library default.
    history = [CELL, "# Parameters\narch = 'vit_small'\n", ""]
    cfg = notebook_config(TrainConfig, _namespace(arch="vit_small"), history=history, logging_level=None)
    assert cfg.arch == "vit_small"
    assert cfg.epochs == TrainConfig().epochs != 2


def test_rerun_after_later_cells_ignores_their_variables():
    history = [CELL, "import torch\nresults = [1, 2]\nthreshold_x = 3", CELL, ""]
    cfg = notebook_config(TrainConfig, _namespace(results=[1, 2], threshold_x=3), history=history, logging_level=None)
    assert cfg.epochs == 2


def test_parameter_names_take_the_latest_parameter_cells():
    assert parameter_names(["x = 1", ""]) is None
    names, injected = parameter_names([CELL, "# Parameters\nlr = 0.1\n", ""])
    assert names == ["epochs", "warmup_epochs", "arch", "overrides", "lr"] and injected == ["lr"]


def test_demo_weights_resolve_to_the_demo_teacher(tmp_path, monkeypatch):
    cell = "# Parameters\npretrained_weights = 'demo'\n"
    monkeypatch.setenv("DINO_DEMO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run `make demo` first"):
        notebook_config(AttentionConfig, {"pretrained_weights": "demo"}, history=[cell, ""], logging_level=None)
    teacher = tmp_path / "pretrain" / "teacher_backbone.pth"
    teacher.parent.mkdir()
    teacher.write_bytes(b"")
    cfg = notebook_config(AttentionConfig, {"pretrained_weights": "demo"}, history=[cell, ""], logging_level=None)
    assert cfg.pretrained_weights == str(teacher)


def test_config_class_names_every_notebook():
    assert config_class("pretrain") is TrainConfig
    with pytest.raises(KeyError, match="no notebook named 'attention'"):
        config_class("attention")


def test_notebook_logging_sends_info_to_stdout_and_warnings_to_stderr(capsys):
    import logging

    from dino_lib.notebook import setup_notebook_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_notebook_logging()
        logging.getLogger("dino_lib.test").info("an info line")
        logging.getLogger("dino_lib.test").warning("a warning line")
        out, err = capsys.readouterr()
        assert "an info line" in out and "an info line" not in err  # Jupyter shows stderr in red
        assert "a warning line" in err and "a warning line" not in out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
