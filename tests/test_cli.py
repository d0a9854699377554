"""The command-line front door shared by every twin: generated help, override spellings, the one error path."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from dino_lib.attention.config import AttentionConfig
from dino_lib.cli import help_text, parse_args, parse_config, requested_task
from dino_lib.config import ConfigError
from dino_lib.eval.config import EvalConfig
from dino_lib.features.config import FeatureConfig
from dino_lib.hierarchical.extraction import RegionExtractionConfig
from dino_lib.hierarchical.heatmaps_run import HIPTHeatmapConfig
from dino_lib.metrics.config import MetricsConfig
from dino_lib.propagation.config import PropagationConfig
from dino_lib.train.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [TrainConfig, EvalConfig, FeatureConfig, RegionExtractionConfig, PropagationConfig, MetricsConfig,
           AttentionConfig, HIPTHeatmapConfig]  # fmt: skip


def _keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_help_lists_every_key_with_type_and_default(cls, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(cls, ["--help"], prog="python -m dino_lib.x")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m dino_lib.x ")
    lines = text.splitlines()
    for key in _keys(cls):
        assert f"  --{key}" in lines, f"--{key} missing from the help of {cls.__name__}"
    assert text.count("[type") == len(_keys(cls))


def test_help_shows_defaults_choices_bounds_help_and_groups():
    text = help_text(TrainConfig, "python -m dino_lib.train")
    assert "\n model:\n" in text and "\n run:\n" in text  # the section comments of the class
    assert "  --slurm.nodes\n" in text
    flat = " ".join(text.split())  # help lines are wrapped
    assert "--check_images before training: decode every image" in flat
    assert "[type str; default 'auto'; one of auto, decode, open, off]" in flat
    assert (
        "--max_images use only the first N images (sorted order); null = all [type int | None; default null; > 0]"
        in flat
    )


def test_overrides_in_all_three_spellings(tmp_path):
    argv = ["--config", "c.yaml", "epochs=3", "--lr", "0.1", "--batch-size-per-gpu=4", "--flag", "--other", "false"]
    args = parse_args([*argv, "--flag2"], ["flag", "other", "flag2"])
    assert args.config == "c.yaml"
    assert args.overrides == ["epochs=3", "lr=0.1", "batch_size_per_gpu=4", "flag=true", "other=false", "flag2=true"]
    argv = ["--epochs", "30", "--lr=5e-4", "--seed", "-3", "--skip_corrupt_images", f"output_dir={tmp_path}"]
    cfg = parse_config(TrainConfig, argv)
    assert (cfg.epochs, cfg.lr, cfg.seed, cfg.skip_corrupt_images) == (30, 0.0005, -3, True)


def test_bad_command_lines_are_config_errors():
    with pytest.raises(ConfigError, match="command line: --epochs needs a value"):
        parse_args(["--epochs"])
    with pytest.raises(ConfigError, match="command line: unexpected argument 'train.yaml'"):
        parse_args(["train.yaml"])
    with pytest.raises(ConfigError, match="--config needs a file name"):
        parse_args(["--config"])


def test_override_errors_are_blamed_on_the_command_line_and_file_errors_on_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 0\n")
    with pytest.raises(ConfigError, match=r"^command line: epochs: must be >= 1, found -1"):
        parse_config(TrainConfig, ["--config", str(cfg), "epochs=-1"])
    with pytest.raises(ConfigError, match=r"c\.yaml: epochs: must be >= 1, found 0"):
        parse_config(TrainConfig, ["--config", str(cfg), "lr=0.1"])


def test_unquoted_off_gets_a_hint(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("check_images: off\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: check_images: expected a string, found false .*'off'"):
        parse_config(TrainConfig, ["--config", str(cfg)])


def test_requested_task_reads_config_then_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: regions\nepochs: 3\n")
    assert requested_task(["--config", str(cfg)]) == "regions"
    assert requested_task([f"--config={cfg}"]) == "regions"
    assert requested_task(["--config", str(cfg), "task=hipt"]) == "hipt"
    assert requested_task(["epochs=2"]) is None


def test_requested_task_reads_every_spelling(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: hipt\n")
    assert requested_task(["--config", str(cfg)]) == "hipt"
    assert requested_task([f"--config={cfg}", "--task", "maps"]) == "maps"
    assert requested_task(["task=regions"]) == "regions"


TWIN_ERRORS = {
    "train": (["--config", "params/pretrain/ci.yaml", "epochs=-1"], "command line: epochs"),
    "eval": (["--config", "params/evaluate/ci.yaml", "--device", "tpu"], "command line: device"),
    "features": (["--config", "params/extract_region_features/ci.yaml", "tile_size=0"], "tile_size"),
    "propagation": (["--config", "params/propagate_segmentation/ci.yaml", "--topk", "0"], "topk"),
    "metrics": (["--config", "params/segmentation_metrics/ci.yaml", "mode=iou"], "mode"),
    "attention": (["--config", "params/attention_maps/ci.yaml", "image_dir=/no/such/dir"], "image_dir"),
    "attention-hipt": (["--config", "params/hipt_heatmaps/ci.yaml", "--scale=0"], "scale"),
}


def _run(tool: str, argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    module = f"dino_lib.{tool.split('-')[0]}"
    cmd = [sys.executable, "-m", module, *argv, f"output_dir={tmp_path / 'out'}"]
    return subprocess.run(cmd, cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("tool", sorted(TWIN_ERRORS))
def test_every_twin_prints_one_message_and_exits_2(tool, tmp_path):
    argv, fragment = TWIN_ERRORS[tool]
    proc = _run(tool, argv, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    prog = f"python -m dino_lib.{tool.split('-')[0]}"
    assert proc.stderr.startswith(f"{prog}: config error: ") and fragment in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2  # the message and the --debug hint
    assert not (tmp_path / "out").exists()


def test_debug_flag_and_variable_show_the_traceback(tmp_path):
    argv, _ = TWIN_ERRORS["train"]
    for extra, env in (([], {"DINO_LIB_DEBUG": "1"}), (["--debug"], {})):
        proc = _run("train", [*argv, *extra], tmp_path, **env)
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_help_of_the_real_command_has_the_right_program_name(tmp_path):
    proc = _run("train", ["--help"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m dino_lib.train ")
    assert "__main__" not in proc.stdout


def test_notebook_errors_show_one_message_and_still_fail_the_cell(monkeypatch, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.delenv("DINO_LIB_DEBUG", raising=False)
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("from dino_lib.notebook import notebook_config\nfrom dino_lib.eval.config import EvalConfig")
        cell = "notebook_config(EvalConfig, {'temperature': -1.0}, logging_level=None)"  # installs the handler
        result = shell.run_cell(cell)
        assert result.error_in_exec is not None  # the cell fails (papermill stops there)
        captured = capsys.readouterr()
        assert (
            "dino_lib: config error: temperature: must be > 0, found -1.0 in notebook parameters"
            in captured.out + captured.err
        )  # the cell's error output
        assert "Traceback" not in captured.out + captured.err
        result = shell.run_cell("[][1]")  # not a config or input error: the usual traceback
        assert isinstance(result.error_in_exec, IndexError)
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
