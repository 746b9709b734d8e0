"""Fails on any import cycle between modules of ``app`` (every import counts, including imports
inside functions and under TYPE_CHECKING), and prints the figures the layering is judged by:

    python .ci/check_imports.py

Uses grimp, the import graph behind import-linter (whose contracts live in pyproject.toml).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def imports_inside_functions(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        names = [a.name for a in inner.names]
                        module = getattr(inner, "module", None) or ""
                        if module.startswith("app") or any(n.startswith("app") for n in names):
                            out.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph("app", include_external_packages=False)
    groups = cycles(graph)
    inner = imports_inside_functions(ROOT / "app")
    lengths = sorted(
        (len(p.read_text().splitlines()), str(p.relative_to(ROOT))) for p in (ROOT / "app").rglob("*.py")
    )
    print(f"import cycles: {len(groups)}")
    for group in groups:
        print("  " + " <-> ".join(group))
    print(f"imports of app modules inside functions: {len(inner)}")
    for where in inner:
        print(f"  {where}")
    print(f"longest module: {lengths[-1][1]} ({lengths[-1][0]} lines)")
    return 1 if groups else 0


if __name__ == "__main__":
    raise SystemExit(main())
