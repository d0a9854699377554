"""Test-suite-wide settings: no network, stable notebook output, isolated caches.

The sample data cache lives in ``<repo>/.cache/dino_lib`` so that
it is built once per checkout and shared by the tests, the notebooks (which inherit the environment) and the demo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
os.environ.setdefault("DINO_LIB_CACHE", str(REPO / ".cache" / "dino_lib"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "inductor"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def sample_paths():
    """The embedded sample data (built on first use, then cached)."""
    from dino_lib.data.samples import ensure_sample_data

    return ensure_sample_data()


@pytest.fixture()
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Per-test Jupyter/IPython/matplotlib config folders, so nothing is written to the home directory."""
    for name in (
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
        "JUPYTERLAB_WORKSPACES_DIR",
        "IPYTHONDIR",
        "MPLCONFIGDIR",
    ):
        folder = tmp_path / "home" / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(folder))
    return tmp_path / "home"


# A tiny labelled folder made of real photos (each class: random crops of one scikit-image photo), shared by the
# evaluation and feature-extraction tests.
LABELLED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_labelled_folder(
    root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, classes=LABELLED_PHOTOS[:3], seed: int = 0
) -> Path:
    """``root/{train,val}/<photo>/*.jpg``: random ``size``-px crops (with flips) of each photo."""
    from skimage import data

    rng = np.random.default_rng(seed)
    for name in classes:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, -1)
        photo = np.asarray(Image.fromarray(photo[..., :3]).resize((160, 160 * photo.shape[0] // photo.shape[1])))
        for split, count in (("train", n_train), ("val", n_val)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                y = rng.integers(0, photo.shape[0] - size)
                x = rng.integers(0, photo.shape[1] - size)
                crop = photo[y : y + size, x : x + size]
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labelled_folder(tmp_path_factory.mktemp("labelled"))


# ----------------------------------------------------------------------------------------- command-line twins
def run_twin_main(tool: str, argv: list[str]) -> int:
    """``python -m dino_lib.<tool> ARGV`` in this process, through the same ``entry`` as the real command."""
    import importlib

    from dino_lib.cli import entry

    module = importlib.import_module(f"dino_lib.{tool}.__main__")
    return entry(module.main, module.PROG, argv)


@pytest.fixture()
def twin(capsys: pytest.CaptureFixture[str]):
    """Run a twin in-process and return ``(exit code, stderr)``."""

    def run(tool: str, *argv: str) -> tuple[int, str]:
        code = run_twin_main(tool, [str(a) for a in argv])
        return code, capsys.readouterr().err

    return run


def _truncated_jpeg(path: Path, size: int = 64) -> Path:
    """A real JPEG cut in half (Pillow reads its header but fails to decode it: 'image file is truncated')."""
    import io

    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()[:size, :size]).save(buffer, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _assert_clean_failure(code: int, err: str, *fragments: str, out: Path | None = None, before: set | None = None):
    """Exit code 2, one message without a traceback naming every fragment, nothing left in ``out``."""
    assert code == 2, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in: {err}"
    if out is not None:
        left = set(p.name for p in out.iterdir()) if out.exists() else set()
        assert left == (before or set()), f"left in {out}: {sorted(left - (before or set()))}"


@pytest.fixture()
def truncated_jpeg():
    """``make(path)`` writes a truncated JPEG at ``path``."""
    return _truncated_jpeg


@pytest.fixture()
def clean_failure():
    """``check(code, err, *fragments, out=..., before=...)``: exit 2, no traceback, fragments named, nothing left."""
    return _assert_clean_failure
