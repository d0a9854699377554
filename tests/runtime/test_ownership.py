"""The runtime owns device, autocast and rank decisions: no other module of dino_lib makes them itself.

An AST scan of every module outside ``dino_lib/runtime/`` for calls of ``torch.autocast`` (and the older
``torch.cpu.amp``/``torch.cuda.amp`` spellings), ``torch.cuda.is_available`` and reads of ``RANK``, ``LOCAL_RANK``
or ``WORLD_SIZE`` from the environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dino_lib

PACKAGE = Path(dino_lib.__file__).parent
RUNTIME = PACKAGE / "runtime"
FORBIDDEN_CALLS = {
    "torch.autocast",
    "torch.amp.autocast",
    "torch.cpu.amp.autocast",
    "torch.cuda.amp.autocast",
    "torch.cuda.is_available",
}
RANK_VARS = {"RANK", "LOCAL_RANK", "WORLD_SIZE"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} calls {name}")
            is_env_read = name in ("os.environ.get", "os.getenv", "environ.get")
            if is_env_read and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in RANK_VARS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads {node.args[0].value}")
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _dotted(node.value) == "os.environ":
            key = node.slice
            if isinstance(key, ast.Constant) and key.value in RANK_VARS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads {key.value}")
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.cuda", "torch.amp"):
            names = {a.name for a in node.names}
            if names & {"autocast", "is_available"}:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {names} from {node.module}")
    return found


def test_only_the_runtime_decides_device_precision_and_ranks():
    modules = [p for p in PACKAGE.rglob("*.py") if RUNTIME not in p.parents]
    assert len(modules) > 50
    violations = [v for p in modules for v in _violations(p)]
    assert not violations, "use dino_lib.runtime instead:\n" + "\n".join(violations)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = PACKAGE / "_ownership_probe_tmp.py"
    source = (
        "import os, torch\n"
        "with torch.autocast('cpu'):\n    pass\n"
        "x = torch.cuda.is_available()\n"
        "r = os.environ.get('RANK')\n"
        "w = os.environ['WORLD_SIZE']\n"
    )
    bad.write_text(source)
    try:
        found = _violations(bad)
    finally:
        bad.unlink()
    assert len(found) == 4, found
