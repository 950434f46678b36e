"""The shape of the package (issue 22): layers import only downwards, edges never reach storage, and
imports across packages go through each package's face (`__init__.py` and its `__all__`)."""

from __future__ import annotations

import ast
import importlib

import pytest

from tests.support.import_graph import cycles, graph, modules, package_of

# Bottom to top. A package imports only packages of lower layers; packages of one layer are independent.
LAYERS: list[set[str]] = [
    {"errors", "money", "logs", "simulator"},  # the ground floor: values, no I/O of ours
    {"query"},
    {"storage"},
    {"catalog", "health", "metrics"},
    {"limits", "accounting"},
    {"config"},
    {"public_url", "providers"},
    {"pipeline"},
    {"tasks"},
    {"web"},  # edges, from here up
    {"http"},
    {"cli"},
]
EDGES = {"http", "web"}
# Edge modules that still import storage (to go in issue 22's phase 3).
EDGE_STORAGE_TODO = {
    "runapi.http.account_api", "runapi.http.admin_api", "runapi.http.errors", "runapi.http.feedback_api",
    "runapi.http.limits_api", "runapi.http.openapi", "runapi.http.tasks_api", "runapi.http.usage_api",
    "runapi.web.admin_dashboard", "runapi.web.dashboard", "runapi.web.reports",
}
# Packages whose face other packages must use (`from runapi.storage import X`, not `runapi.storage.ledger`).
FACED = {"storage", "accounting", "limits", "catalog"}


def _rank(package: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if package in layer:
            return rank
    raise AssertionError(f"package `{package}` is in no layer of tests/test_layers.py")


def test_every_package_has_a_layer() -> None:
    for module, _ in modules():
        if module != "runapi":
            _rank(package_of(module))


def test_layers_import_only_downwards() -> None:
    upward = [f"{source} -> {dest} ({', '.join(sorted(files))})"
              for source, targets in graph().items() for dest, files in targets.items()
              if _rank(dest) >= _rank(source)]
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_no_package_cycle() -> None:
    assert cycles(graph()) == []


def test_edges_do_not_import_storage() -> None:
    reaching = {module for edge in EDGES for module in graph()[edge].get("storage", set())}
    assert reaching <= EDGE_STORAGE_TODO, f"edge modules importing storage: {sorted(reaching - EDGE_STORAGE_TODO)}"


def _cross_package_imports() -> list[tuple[str, str, list[str]]]:
    """(importing module, imported module, names) of every `from runapi.<other package>... import`."""
    found = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("runapi."):
                assert node.module is not None
                if package_of(node.module) != package_of(module):
                    found.append((module, node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("package", sorted(FACED))
def test_imports_across_packages_use_the_face(package: str) -> None:
    face = importlib.import_module(f"runapi.{package}")
    exported = set(face.__all__)
    wrong = [f"{module}: from {imported} import {', '.join(names)}"
             for module, imported, names in _cross_package_imports()
             if package_of(imported) == package and (imported != face.__name__ or not set(names) <= exported)]
    assert not wrong, f"imports past the face of runapi.{package}:\n" + "\n".join(wrong)
    assert all(hasattr(face, name) for name in exported)
