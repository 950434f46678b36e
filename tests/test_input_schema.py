"""The compiled input check (fastjsonschema, draft 7) and jsonschema (draft 2020-12) agree on every built-in
model's schema, for valid bodies and for each kind of mistake; `check_request` passes exactly the bodies
jsonschema passes."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import jsonschema
import pytest

from runapi.catalog.catalog import build_catalog, builtin_catalog_data
from runapi.catalog.input_schema import _compiled, _encode, check_request
from runapi.errors import InvalidRequest

CATALOG = build_catalog(builtin_catalog_data(), {}, {})

# Values of every JSON type, and the edges the schemas draw (bool is not an integer, 0 and negatives, empties).
VALUES: list[Any] = [None, True, False, 0, 1, 2, -1, 3.5, 10**6, "", "x", "1024x1024", "url", "b64_json", "base64",
                     "float", [], ["a"], ["a", "b"], [1, 2], [[1, 2]], [[]], [""], {}, {"a": 1}]


def _bodies(schema: dict[str, Any], model: str) -> list[Any]:
    """A valid-looking body per mode, then each property set to each value, and each required one removed."""
    base: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "input": ["a", "b"],
                            "prompt": "a fox"}
    base = {key: value for key, value in base.items() if key in schema.get("properties", {})}
    bodies: list[Any] = [base, {}, [], "text", None]
    for name, value in itertools.product(schema.get("properties", {}), VALUES):
        bodies.append({**base, name: copy.deepcopy(value)})
    for name in schema.get("required", []):
        bodies.append({key: value for key, value in base.items() if key != name})
    return bodies


@pytest.mark.parametrize("model", sorted(CATALOG.models))
def test_the_compiled_check_agrees_with_jsonschema(model: str) -> None:
    schema = CATALOG.models[model].input_schema()
    reference = jsonschema.Draft202012Validator(schema)
    compiled = _compiled(_encode(schema))
    disagreements = []
    for body in _bodies(schema, model):
        try:
            compiled(body)
            fast = True
        except Exception:  # the compiled check's verdict, whatever it raised
            fast = False
        if fast != reference.is_valid(body):
            disagreements.append(body)
        try:
            check_request(schema, body)
            passed = True
        except InvalidRequest:
            passed = False
        assert passed == reference.is_valid(body), body
    assert disagreements == []
