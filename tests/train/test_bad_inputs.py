"""``python -m dino_lib.train`` on bad inputs: one message naming the key or file, exit code 2, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from dino_lib.utils.rundir import RunFolder

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "params" / "pretrain" / "ci.yaml"


def _images(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(data.astronaut()[i * 30 : i * 30 + 64, :64]).save(folder / f"{i}.png")
    return folder


CASES = {
    "negative epochs": (["epochs=-1"], ["command line: epochs: must be >= 1"]),
    "misspelt key": (["epoch=3"], ["unknown key 'epoch'", "did you mean 'epochs'"]),
    "not a number": (["--lr", "abc"], ["lr: expected a number"]),
    "negative max_images": (["max_images=-1"], ["max_images: must be > 0"]),
    "unknown device": (["device=tpu"], ["device: expected auto, cpu, cuda or cuda:N", "'tpu'"]),
    "missing GPU index": (["device=cuda:99"], ["device: 'cuda:99'"]),
    "missing data": (["data_path=/no/such/images"], ["data_path: /no/such/images does not exist"]),
    "check_images choice": (["check_images=fast"], ["check_images: expected one of"]),
    "value without key": (["--epochs"], ["--epochs needs a value"]),
    "stray argument": (["train.yaml"], ["unexpected argument 'train.yaml'"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_errors(name, tmp_path, twin, clean_failure):
    extra, fragments = CASES[name]
    out = tmp_path / "out"
    code, err = twin("train", "--config", CI, f"output_dir={out}", *extra)
    clean_failure(code, err, *fragments, out=out)


def test_unquoted_off_in_the_file(tmp_path, twin, clean_failure):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(CI.read_text() + "check_images: off\n")
    code, err = twin("train", "--config", cfg, f"output_dir={tmp_path / 'out'}")
    clean_failure(code, err, "my.yaml: check_images", "quote the value", out=tmp_path / "out")


def test_missing_and_invalid_config_files(tmp_path, twin, clean_failure):
    code, err = twin("train", "--config", tmp_path / "absent.yaml")
    clean_failure(code, err, "config file not found", "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    code, err = twin("train", "--config", bad)
    clean_failure(code, err, "bad.yaml: not valid YAML")


def test_output_dir_that_is_a_file_or_read_only(tmp_path, twin, clean_failure):
    afile = tmp_path / "results"
    afile.write_text("keep me")
    code, err = twin("train", "--config", CI, f"output_dir={afile}")
    clean_failure(code, err, "output_dir:", "is a file")
    assert afile.read_text() == "keep me"
    code, err = twin("train", "--config", CI, "output_dir=/proc/dino_lib_run")
    clean_failure(code, err, "output_dir:", "not writable")


def test_empty_image_folder(tmp_path, twin, clean_failure):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    code, err = twin("train", "--config", CI, f"data_path={tmp_path / 'empty'}", f"output_dir={out}", "knn_every=0")
    clean_failure(code, err, "no images found", "empty", out=out)


def test_truncated_image_is_named_and_a_good_run_is_untouched(tmp_path, twin, clean_failure, truncated_jpeg):
    images = _images(tmp_path / "imgs", 16)
    truncated_jpeg(images / "cut.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("epochs: 2\n")  # a previous good run
    argv = ["--config", CI, f"data_path={images}", f"output_dir={out}", "knn_every=0", "max_images=null"]
    code, err = twin("train", *argv)
    clean_failure(code, err, "cut.jpg", "skip_corrupt_images", out=out, before={"config.yaml"})
    assert (out / "config.yaml").read_text() == "epochs: 2\n"


def test_fewer_images_than_one_batch(tmp_path, twin, clean_failure):
    images = _images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    code, err = twin("train", "--config", CI, f"data_path={images}", f"output_dir={out}", "knn_every=0")
    clean_failure(code, err, "4 images, fewer than one global batch of 8", out=out)


def test_second_run_on_the_same_folder_is_refused(tmp_path, twin, clean_failure):
    out = tmp_path / "out"
    with RunFolder(out):  # a run in progress
        code, err = twin("train", "--config", CI, f"output_dir={out}")
        clean_failure(code, err, "output_dir:", "in use by another run", "pid=", out=out, before={".dino_lib.lock"})
