"""The shape of the package (issue 22): layers import only downwards, edges never reach storage, and
imports across packages go through each package's face (`__init__.py` and its `__all__`)."""

from __future__ import annotations

import ast
import functools
import importlib

import pytest

from tests.support import import_graph
from tests.support.import_graph import cycles, modules, package_of

graph = functools.cache(import_graph.graph)  # read the source once for every test here

# Bottom to top. A package imports only packages of lower layers; packages of one layer are independent.
LAYERS: list[set[str]] = [
    {"errors", "money", "clock", "logs", "simulator"},  # the ground floor: values, no I/O of ours
    {"query", "outage", "media_location"},
    {"storage", "transport"},
    {"catalog", "health", "metrics", "stalls", "protocols", "outbound"},
    {"limits", "accounting"},
    {"config"},
    {"public_url", "providers", "media"},
    {"pipeline", "services"},  # what one call goes through; what the edges call
    {"tasks"},
    {"runtime"},  # the composition root
    {"web"},  # edges, from here up
    {"http"},
    {"cli"},
]
EDGES = {"http", "web"}
# What only the composition root and the services may touch: stores, engines, the settlement writer.
STORE_ATTRIBUTES = {"engine", "ledger", "settlements", "settlement_sink", "change_probe", "credit", "response_store"}
# Packages whose faces other packages must use (`from runapi.storage import X`, not `runapi.storage.ledger`).
FACES = {package: [package] for package in ("storage", "accounting", "limits", "catalog", "pipeline", "services",
                                            "providers", "transport", "tasks", "web", "http")}
FACES["protocols"] = ["protocols.openai", "protocols.anthropic", "protocols.responses"]


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
    reaching = sorted(module for edge in EDGES for module in graph()[edge].get("storage", set()))
    assert reaching == [], f"edge modules importing storage: {reaching}"


def test_edges_call_services_not_stores() -> None:
    """No `gw.engine`, `gw.ledger`, `gw.settlements` ... in an edge: it calls `gw.accounts`, `gw.usage` ..."""
    reaching = [f"{module}:{node.lineno} .{node.attr}" for module, path in modules()
                if package_of(module) in EDGES for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES]
    assert reaching == [], "edges reaching past the services:\n" + "\n".join(reaching)


@functools.cache
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


@pytest.mark.parametrize("package", sorted(FACES))
def test_imports_across_packages_use_the_face(package: str) -> None:
    faces = {f"runapi.{name}": importlib.import_module(f"runapi.{name}") for name in FACES[package]}
    exported = {name: set(face.__all__) for name, face in faces.items()}
    wrong = [f"{module}: from {imported} import {', '.join(names)}"
             for module, imported, names in _cross_package_imports()
             if package_of(imported) == package and not set(names) <= exported.get(imported, set())]
    assert not wrong, f"imports past the faces of runapi.{package}:\n" + "\n".join(wrong)
    for name, face in faces.items():
        assert all(hasattr(face, exported_name) for exported_name in exported[name])


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a made-up graph with a cycle and an edge importing storage."""
    made_up = {"limits": {"accounting": {"runapi.limits.x"}}, "accounting": {"limits": {"runapi.accounting.y"}},
               "http": {"storage": {"runapi.http.z"}}}
    assert cycles(made_up) == [["accounting", "limits"]]
    upward = [(source, dest) for source, targets in made_up.items() for dest in targets if _rank(dest) >= _rank(source)]
    assert upward == [("limits", "accounting"), ("accounting", "limits")]
