"""Shape of the library code: every function and method stays short enough to read in one screen."""

from __future__ import annotations

import ast
from pathlib import Path

import dino_lib

MAX_FUNCTION_LINES = 60  # from the def line to the last line of the body, the docstring not counted

PACKAGE = Path(dino_lib.__file__).parent


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def _function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """``(line, name, length)`` of every function and method in ``path``, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            found.append((node.lineno, node.name, length))
    return found


def test_functions_are_at_most_max_lines():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {length} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, length in _function_lengths(path)
        if length > MAX_FUNCTION_LINES
    ]
    assert not offenders, f"functions longer than {MAX_FUNCTION_LINES} lines (docstring excluded):\n" + "\n".join(
        offenders
    )


def test_length_counts_signature_and_body_but_not_docstring(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f(\n    a,\n    b,\n):\n    """Doc.\n\n    More.\n    """\n    x = a\n    return x + b\n')
    assert _function_lengths(path) == [(1, "f", 6)]
