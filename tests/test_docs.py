"""The docs are self-contained and complete: every config key of every task is documented in its topic guide, and
no committed text points at documents users do not have."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from dino_lib.attention.config import AttentionConfig
from dino_lib.eval.config import EvalConfig
from dino_lib.features.config import FeatureConfig
from dino_lib.features.regions import RegionExtractionConfig
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


_FORBIDDEN = re.compile(r"§|\bspec/|DESIGN\.md|/work/|\b(?:TRN|HIE|PRP|EVL|ATT|ENV|MET)-[A-Z]?\d+\b")


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
