"""The docs are self-contained and complete: every config key of every task is documented in its topic guide, and
no committed text points at documents users do not have."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from dino_lib.attention.config import AttentionConfig
from dino_lib.eval.config import EvalConfig
from dino_lib.features.config import FeatureConfig
from dino_lib.hierarchical.extraction import RegionExtractionConfig
from dino_lib.hierarchical.heatmaps_run import HIPTHeatmapConfig
from dino_lib.hierarchical.region_task import RegionTaskConfig
from dino_lib.metrics.config import MetricsConfig
from dino_lib.propagation.config import PropagationConfig
from dino_lib.train.config import SlurmConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# config class -> (topic guide, prefix of its keys there: nested configs are written slurm.nodes, region.g, ...)
GUIDES: dict[type, tuple[str, str]] = {
    TrainConfig: ("pretraining.md", ""),
    SlurmConfig: ("pretraining.md", "slurm."),
    RegionTaskConfig: ("hierarchical.md", "region."),
    EvalConfig: ("evaluation.md", ""),
    FeatureConfig: ("evaluation.md", ""),
    AttentionConfig: ("attention.md", ""),
    PropagationConfig: ("propagation.md", ""),
    MetricsConfig: ("metrics.md", ""),
    RegionExtractionConfig: ("hierarchical.md", ""),
    HIPTHeatmapConfig: ("hierarchical.md", ""),
}


def _documented(text: str, key: str) -> bool:
    """``key`` in backticks on a line that also says something about it (a table row or a list item)."""
    pattern = re.compile(rf"`{re.escape(key)}`")
    for line in text.splitlines():
        if pattern.search(line) and len(re.sub(r"`[^`]*`|[|*\-,\s]", "", line)) >= 3:
            return True
    return False


def test_every_config_key_is_documented_in_its_guide():
    missing: dict[str, list[str]] = {}
    for cls, (guide, prefix) in GUIDES.items():
        text = (DOCS / guide).read_text()
        absent = [prefix + f.name for f in dataclasses.fields(cls) if not _documented(text, prefix + f.name)]
        if absent:
            missing.setdefault(f"docs/{guide} ({cls.__name__})", []).extend(absent)
    assert not missing, "config keys without a meaning in docs/ (add a table row or list item for each):\n" + "\n".join(
        f"  {where}: {', '.join(keys)}" for where, keys in missing.items()
    )


# Written so that this file does not cite what it forbids: a section sign, the reference folder and design file,
# the build machine's paths, and requirement ids.
_SECTION = "\N{SECTION SIGN}"
_DESIGN = r"DESIG[N]\.md"
_MACHINE_PATH = r"/wor[k]/"
_REQUIREMENT_ID = r"\b(?:TRN|HIE|PRP|EVL|ATT|ENV|MET)-[A-Z]?\d+\b"
_FORBIDDEN = re.compile("|".join([_SECTION, r"\bsp[e]c/", _DESIGN, _MACHINE_PATH, _REQUIREMENT_ID]))


def _texts() -> list[tuple[str, str]]:
    out = [(str(p.relative_to(REPO)), p.read_text()) for p in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]]
    out += [(str(p.relative_to(REPO)), p.read_text()) for p in sorted((REPO / "params").glob("*/*.yaml"))]
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out.append((str(nb.relative_to(REPO)), "\n".join("".join(c["source"]) for c in cells)))
    return out


@pytest.mark.parametrize("name,text", _texts(), ids=[n for n, _ in _texts()])
def test_no_reference_to_documents_outside_the_repository(name: str, text: str):
    hits = [m.group(0) for m in _FORBIDDEN.finditer(text)]
    assert not hits, f"{name} cites documents users do not have: {hits}; write the fact in docs/ instead"


# Code, tests, benchmarks and tools: the same rule, plus bare names of the outside reference documents. The repo's own
# guides are cited as ``docs/<name>.md``; the reference folder name inside a URL path (git-lfs pointers) is no citation.
_OUTSIDE_NAMES = "|".join(
    ["training", "evaluation", "hierarchical", "propagation", "attention", "environment", "style"]
)
_FORBIDDEN_IN_CODE = re.compile(
    "|".join(
        [
            _SECTION,
            r"(?<![\w./-])sp[e]c/",
            _DESIGN,
            _MACHINE_PATH,
            _REQUIREMENT_ID,
            rf"(?<![\w/.-])(?:{_OUTSIDE_NAMES})\.md\b",
        ]
    )
)
_CODE_ROOTS = ["dino_lib", "tests", "benchmarks", "tools", "Makefile", ".ci/run"]


def _tracked_code_files() -> list[Path]:
    """Tracked files under the code roots (every file under them when the checkout has no git metadata)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *_CODE_ROOTS], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        files = [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:
        files = [
            p for root in _CODE_ROOTS for p in ([REPO / root] if (REPO / root).is_file() else (REPO / root).rglob("*"))
        ]
    this = Path(__file__).resolve()
    return sorted(p for p in files if p.is_file() and p.resolve() != this and "__pycache__" not in p.parts)


def test_code_tests_and_tools_cite_no_outside_documents():
    files = _tracked_code_files()
    assert any(p.suffix == ".py" for p in files), f"no Python files found under {_CODE_ROOTS} in {REPO}"
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binary fixtures
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _FORBIDDEN_IN_CODE.finditer(line):
                hits.append(f"  {path.relative_to(REPO)}:{number}: {match.group(0)!r} in {line.strip()[:100]}")
    assert not hits, (
        f"{len(hits)} citation(s) of documents users do not have; state the fact in the project's own words or point "
        "to a docs/<guide>.md section:\n" + "\n".join(hits)
    )
