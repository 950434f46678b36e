"""The package import graph of `src/runapi`, read from the source (no import runs).

`python -m tests.support.import_graph` prints each package's imports of other packages, with the
number of importing files, and the package cycles: the "before/after" picture of issue 22.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "runapi"


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every module under `src/runapi`, migrations excluded."""
    for path in sorted((SRC / ROOT).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports_of(module: str, path: Path) -> set[str]:
    """The `runapi.*` modules that `module` imports (absolute or relative), at any depth of its body."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == ROOT:
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_of(module: str) -> str:
    """`runapi.limits.rates` → `limits`; a top-level module is its own package (`errors`, `money`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def graph() -> dict[str, dict[str, set[str]]]:
    """package → imported package → the importing modules."""
    known = {name for name, _ in modules()}
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for module, path in modules():
        for target in imports_of(module, path):
            while target not in known and "." in target:  # `from runapi.x import name`: name is not a module
                target = target.rpartition(".")[0]
            source, dest = package_of(module), package_of(target)
            if source != dest and dest != ROOT:
                edges[source][dest].add(module)
    return edges


def cycles(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted({*edges, *(d for targets in edges.values() for d in targets)}):
        if node not in index:
            visit(node)
    return groups


def main() -> None:
    edges = graph()
    for source in sorted(edges):
        targets = ", ".join(f"{dest}({len(files)})" for dest, files in sorted(edges[source].items()))
        print(f"{source:12} -> {targets}")
    found = cycles(edges)
    print("cycles:", "; ".join(" <-> ".join(group) for group in found) if found else "none")
    for group in found:
        for a in group:
            for b in group:
                if b in edges.get(a, {}):
                    print(f"  {a} -> {b}: {', '.join(sorted(edges[a][b]))}")


if __name__ == "__main__":
    main()
