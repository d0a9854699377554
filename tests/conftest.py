"""Test-suite-wide settings: no network, stable notebook output, isolated caches.

Environment variables follow environment.md §12. The sample data cache lives in ``<repo>/.cache/dino_lib`` so that
it is built once per checkout and shared by the tests, the notebooks (which inherit the environment) and the demo.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    from dino_lib.sample_data import ensure_sample_data

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
