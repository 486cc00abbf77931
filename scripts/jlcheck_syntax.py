"""Julia static checker (check_julia.py), its parsing: the tree-sitter Julia parser, walking
and reading its trees, the package's ``.jl`` files, and check 1 (every file parses)."""

from __future__ import annotations

import os
import sys
from typing import Dict, List

# ------------------------------------------------------------------ parsing


def _parser():
    try:
        import tree_sitter_julia
        from tree_sitter import Language, Parser
    except ImportError as e:  # pragma: no cover
        sys.exit(f"check_julia: {e}; pip install tree-sitter tree-sitter-julia")
    return Parser(Language(tree_sitter_julia.language()))


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node) -> str:
    return node.text.decode("utf-8")


def jl_files(package: str) -> List[str]:
    out = []
    for d, _, files in os.walk(package):
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".jl")]
    return sorted(out)


def check_syntax(trees: Dict[str, object], rel) -> List[str]:
    errors = []
    for path, tree in trees.items():
        for n in _walk(tree.root_node):
            if n.type == "ERROR" or n.is_missing:
                what = "missing " + n.type if n.is_missing else "syntax error"
                errors.append(f"{rel(path)}:{n.start_point[0] + 1}: {what} near {_text(n)[:40]!r}")
                break  # the first one per file: later ones are usually consequences
    return errors
